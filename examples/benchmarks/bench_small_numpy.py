"""Small exact L2 problems: neural_ot's numpy Newton stage against its torch stage and POT, in one process.

CPU problems up to ``neural_ot._newton._NUMPY_STAGE_WORK`` (``min(n, m)^2 max(n, m)``, about 215 x 215) run their
Newton stages in numpy (``neural_ot._small_newton``); larger ones, and all of them before, in torch. For each
problem the script alternates, ``--repeats`` times: the torch stage (the numpy stage switched off), the numpy stage
(forced on at every size, to show where it stops paying), and POT's ``smooth_ot_dual`` (``stopThr=1e-12``; a masked
problem gets a large cost on its masked pairs), and reports the median and best time of each and the marginal
errors of the plans. Problems: the keypoint demo's masked one (``make_problem(n)``, its ``eps``) at n = 90, 180
and 270, and the pytest-benchmark suite's dense ``L2 exact`` problem at n = 100 to 300; with ``--sparse``, the same
clouds at POT reg 1, 0.1 and 0.01 (sparse plans) at n = 100 to 200::

    python examples/benchmarks/bench_small_numpy.py --out docs/data/bench_small_numpy.json
    python examples/benchmarks/bench_small_numpy.py --table docs/data/bench_small_numpy.json > docs/bench_small_numpy.inc
    python examples/benchmarks/bench_small_numpy.py --sparse --out docs/data/bench_small_numpy-sparse.json
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keypoint_ot_demo import EPS, keypoint_cost, make_problem  # noqa: E402

MODES = ("torch_stage", "numpy_stage", "pot")
SPARSE_REGS = (1.0, 0.1, 0.01)  # POT's reg on the same problem: a few pairs per point active


def table(record: dict[str, Any]) -> str:
    """The record as the docs' RST table: median ms of each way, the speed-ups and the marginal errors."""
    from otpr_sb3.benchmark.report_rst import list_table

    rows = []
    for r in record["rows"]:
        torch_ms, numpy_ms, pot_ms = (r[f"{mode}_median_ms"] for mode in MODES)
        rows.append(
            [r["case"], f"{torch_ms:.2f}", f"{numpy_ms:.2f}", f"{pot_ms:.2f}", f"{torch_ms / numpy_ms:.2f}x"]
            + [f"{pot_ms / numpy_ms:.2f}x", f"{r['numpy_stage_error']:.1e}", f"{r['pot_error']:.1e}"]
        )
    headers = ["problem", "torch stage [ms]", "numpy stage [ms]", "POT [ms]", "numpy vs torch", "numpy vs POT"]
    return list_table(headers + ["neural_ot error", "POT error"], rows)


def _masked(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The keypoint demo's problem at ``n`` points: its mixed cost, its keypoint mask and its ``eps``."""
    x, y, pairs = make_problem(n)
    _, cost = keypoint_cost(x, y, pairs)
    return np.asarray(cost(x, y)), no.keypoint_mask(len(x), len(y), pairs), EPS


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sparse", action="store_true", help="the sparse family instead (POT reg 1, 0.1, 0.01)")
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(1)
    numpy_stage, work = _newton._numpy_stage, _newton._NUMPY_STAGE_WORK
    if args.sparse:
        sizes = (100, 150, 200)  # the numpy stage's sizes: above them a sparse problem runs a working set
        clouds = {n: _problem(n) for n in sizes}
        cases = [(f"L2 sparse, POT reg {r:g}, n = {n}", clouds[n], None, r / (2 * n * n)) for r in SPARSE_REGS for n in sizes]
    else:
        cases = [(f"keypoint demo, masked, n = {n}", *_masked(n)) for n in (90, 180, 270)]
        cases += [(f"L2 exact, n = {n}", _problem(n), None, 0.05) for n in (100, 150, 200, 250, 300)]
    rows = []
    for name, M, mask, eps in cases:
        n = M.shape[0]
        a = np.full(n, 1.0 / n)
        M_pot = M if mask is None else M + 10.0 * (1 - mask)
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        plans: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for mode in MODES:
                _newton._numpy_stage = _newton._newton_stage if mode == "torch_stage" else numpy_stage
                _newton._NUMPY_STAGE_WORK = float("inf")
                t0 = time.perf_counter()
                if mode == "pot":
                    kw = {"reg_type": "l2", "stopThr": 1e-12, "numItermax": 5000}
                    plans[mode] = ot.smooth.smooth_ot_dual(a, a, M_pot, 2 * eps * n * n, **kw)
                else:
                    plans[mode] = no.solve_discrete(a, a, M, eps, mask=mask).plan
                times[mode].append(time.perf_counter() - t0)
        _newton._numpy_stage, _newton._NUMPY_STAGE_WORK = numpy_stage, work
        row: dict[str, object] = {"case": name}
        for mode, values in times.items():
            row[f"{mode}_median_ms"] = 1e3 * float(np.median(values))
            row[f"{mode}_best_ms"] = 1e3 * min(values)
            row[f"{mode}_error"] = _marginal_error(plans[mode], a, a)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        write_record(args.out, args, rows)


if __name__ == "__main__":
    main()
