"""The sparse direct solves of the working-set Newton: SuperLU in symmetric mode against spsolve, in one process.

Where the working set's Newton system is small enough, ``_HessianOperator.solve_sparse`` factors it directly. The
system is symmetric positive definite (the dual's Hessian on the free nodes plus a Levenberg term), so SuperLU can
order it by minimum degree on ``A + A^T`` and factor it without pivoting (``_newton_system._SYMMETRIC_LU``), where
``scipy.sparse.linalg.spsolve`` runs a general LU (COLAMD order, partial pivoting). For each problem of the L2
table (``bench_neural_ot._problem``, POT reg 0.1 and 0.01) the script alternates, ``--repeats`` times, the solve
with each, and reports the median time, the Newton iterations, the marginal error and the L1 distance between the
two plans::

    python examples/benchmarks/bench_sparse_direct.py --out docs/data/bench_sparse_direct.json
    python examples/benchmarks/bench_sparse_direct.py --table docs/data/bench_sparse_direct.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch as th

import neural_ot as no
from neural_ot import _newton_system

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neural_ot import _problem  # noqa: E402
from record_cli import printed_table, record_parser, write_record  # noqa: E402

MODES = {"symmetric": True, "spsolve": False}
SIZES = (500, 1000, 2000)
POT_REGS = (0.1, 0.01)


def table(record: dict[str, Any]) -> str:
    """The record as the docs' RST table: median seconds (Newton iterations) of each way and the speed-up."""
    from otpr_sb3.benchmark.report_rst import list_table

    rows = []
    for r in record["rows"]:
        cells = [f"{r[f'{mode}_median_s']:.3f} ({r[f'{mode}_n_iter']})" for mode in MODES]
        speed = r["spsolve_median_s"] / r["symmetric_median_s"]
        rows.append([r["case"], *cells, f"{speed:.2f}x", f"{r['plan_l1']:.0e}", f"{r['symmetric_error']:.0e}"])
    headers = ["problem", "symmetric LU [s] (iters)", "spsolve [s] (iters)", "speed-up", "plans' L1", "error"]
    return list_table(headers, rows)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(1)
    rows = []
    for n in SIZES:
        M = _problem(n)
        a = np.full(n, 1.0 / n)
        for reg in POT_REGS:
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            results: dict[str, Any] = {}
            for _ in range(args.repeats):
                for mode, symmetric in MODES.items():
                    _newton_system._SYMMETRIC_LU = symmetric
                    t0 = time.perf_counter()
                    results[mode] = no.solve_discrete(a, a, M, reg / (2.0 * n * n))
                    times[mode].append(time.perf_counter() - t0)
            _newton_system._SYMMETRIC_LU = True
            row: dict[str, Any] = {"case": f"n = {n}, POT reg {reg:g}"}
            for mode, values in times.items():
                row[f"{mode}_median_s"] = float(np.median(values))
                row[f"{mode}_n_iter"] = int(results[mode].n_iter)
                row[f"{mode}_error"] = float(results[mode].marginal_error)
            row["plan_l1"] = float(np.abs(results["symmetric"].plan - results["spsolve"].plan).sum())
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        write_record(args.out, args, rows)


if __name__ == "__main__":
    main()
