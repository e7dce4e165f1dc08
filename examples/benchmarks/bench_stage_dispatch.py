"""Which L2 Newton stage a mid-size CPU problem should run: each of neural_ot's three, side by side in one process.

``neural_ot._newton`` picks an L2 stage by size: the numpy stage up to ``min(n, m)^2 max(n, m) = _NUMPY_STAGE_WORK``
(and, since 2026-12-07, up to ``_NUMPY_DENSE_WORK`` for a problem whose cold start is dense), the full-matrix torch
stage below ``_WORKING_SET_MIN_PAIRS`` pairs, the working-set stage above. The dense steps cost the same whatever the
plan's sparsity, the working set's in proportion to its pairs. For each problem the script alternates, ``--repeats``
times, the solve with each stage forced and as shipped, and reports the median time, the Newton iterations and the
marginal error of each. Problems: the benchmark's two Gaussian clouds (``bench_neural_ot._problem``) at n = 100 to 400
and POT reg 1, 0.1 and 0.01 (sparse plans), and the dense ``L2 exact`` problem (``eps = 0.05``) of the
pytest-benchmark suite. With ``--pot``, POT's ``smooth_ot_dual`` (``stopThr=1e-12``) joins the alternation on the same
problem (POT's ``reg = 2 eps n^2``)::

    python examples/benchmarks/bench_stage_dispatch.py --out docs/data/bench_stage_dispatch.json
    python examples/benchmarks/bench_stage_dispatch.py --pot --out docs/data/bench_stage_dispatch-pot.json
    python examples/benchmarks/bench_stage_dispatch.py --table docs/data/bench_stage_dispatch.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np
import ot
import torch as th

import neural_ot as no
from neural_ot import _newton

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neural_ot import _marginal_error, _problem  # noqa: E402
from record_cli import printed_table, record_parser, write_record  # noqa: E402

# (numpy stage work limit, its limit for dense starts, working-set minimum pairs) that force each stage; "shipped"
# keeps the module's values.
MODES: dict[str, tuple[float, float, float] | None] = {
    "shipped": None,
    "numpy": (float("inf"), float("inf"), float("inf")),
    "full": (0.0, 0.0, float("inf")),
    "working_set": (0.0, 0.0, 0.0),
}
SIZES = (100, 150, 200, 250, 300, 400)
POT_REGS = (1.0, 0.1, 0.01)
POT_STOP = {"stopThr": 1e-12, "numItermax": 5000}  # as bench_small_numpy.py: POT's tightest useful stop


def table(record: dict[str, Any]) -> str:
    """The record as the docs' RST table: median ms (and Newton iterations) of each stage, and the shipped one's."""
    from otpr_sb3.benchmark.report_rst import list_table

    pot = "pot_median_ms" in record["rows"][0]
    rows = []
    for r in record["rows"]:
        cells = [f"{r[f'{mode}_median_ms']:.1f} ({r[f'{mode}_n_iter']})" for mode in MODES]
        fastest = min(MODES, key=lambda mode: r[f"{mode}_median_ms"])
        rows.append([r["case"], f"{r['density']:.3f}", *cells, fastest.replace("_", " ")])
        if pot:
            rows[-1] += [f"{r['pot_median_ms']:.1f}", f"{r['pot_median_ms'] / r['shipped_median_ms']:.2f}x"]
            rows[-1] += [f"{r['shipped_error']:.0e}", f"{r['pot_error']:.0e}"]
    headers = ["problem", "plan density", *(f"{mode.replace('_', ' ')} [ms] (iters)" for mode in MODES), "fastest"]
    if pot:
        headers += ["POT [ms]", "shipped vs POT", "shipped error", "POT error"]
    return list_table(headers, rows)


def _cases() -> list[tuple[str, np.ndarray, float]]:
    cases = []
    for n in SIZES:
        M = _problem(n)
        cases += [(f"n = {n}, POT reg {reg:g}", M, reg / (2.0 * n * n)) for reg in POT_REGS]
        cases.append((f"n = {n}, dense (eps 0.05)", M, 0.05))
    return cases


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pot", action="store_true", help="alternate POT's smooth_ot_dual too (stopThr 1e-12)")
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(1)
    shipped = _newton._NUMPY_STAGE_WORK, _newton._NUMPY_DENSE_WORK, _newton._WORKING_SET_MIN_PAIRS
    rows = []
    for name, M, eps in _cases():
        a = np.full(M.shape[0], 1.0 / M.shape[0])
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        pot_times: list[float] = []
        results: dict[str, Any] = {}
        for _ in range(args.repeats):
            for mode, limits in MODES.items():
                _newton._NUMPY_STAGE_WORK, _newton._NUMPY_DENSE_WORK, _newton._WORKING_SET_MIN_PAIRS = limits or shipped
                t0 = time.perf_counter()
                results[mode] = no.solve_discrete(a, a, M, eps)
                times[mode].append(time.perf_counter() - t0)
            if args.pot:
                t0 = time.perf_counter()
                plan = ot.smooth.smooth_ot_dual(a, a, M, 2.0 * eps * len(a) ** 2, reg_type="l2", **POT_STOP)
                pot_times.append(time.perf_counter() - t0)
        _newton._NUMPY_STAGE_WORK, _newton._NUMPY_DENSE_WORK, _newton._WORKING_SET_MIN_PAIRS = shipped
        row: dict[str, Any] = {"case": name, "density": float((results["shipped"].plan > 0).mean())}
        for mode, values in times.items():
            row[f"{mode}_median_ms"] = 1e3 * float(np.median(values))
            row[f"{mode}_n_iter"] = int(results[mode].n_iter)
            row[f"{mode}_error"] = float(results[mode].marginal_error)
        if args.pot:
            row["pot_median_ms"], row["pot_error"] = 1e3 * float(np.median(pot_times)), _marginal_error(plan, a, a)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        write_record(args.out, args, rows)


if __name__ == "__main__":
    main()
