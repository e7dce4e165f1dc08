"""Small exact L2 problems solved by neural_ot and POT one after the other, as a script alternating the two would.

POT's L-BFGS runs on numpy, whose BLAS threads can keep spinning between calls; torch work that follows then waits
for its own threads. For each problem the script alternates, ``--repeats`` times: neural_ot on the caller's torch
threads (``--threads``), POT, neural_ot as shipped (one torch thread up to ``neural_ot._threads.ONE_THREAD_PAIRS``
pairs), POT; and reports the median and best time of each, side by side in one process. Problems: the 90-point keypoint demo
(masked) and the pytest-benchmark suite's dense ``L2 exact`` problems::

    python examples/benchmarks/bench_small_alternating.py --threads 2 --out docs/data/bench_small_alternating.json
    python examples/benchmarks/bench_small_alternating.py --table docs/data/bench_small_alternating.json \
        > docs/bench_small_alternating.inc
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import ot
import torch as th

import neural_ot as no
import neural_ot._threads as _threads

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neural_ot import _problem  # noqa: E402
from keypoint_ot_demo import EPS, keypoint_cost, make_problem  # noqa: E402
from record_cli import printed_table, record_parser  # noqa: E402

ONE_THREAD_PAIRS = _threads.ONE_THREAD_PAIRS


def masked_demo() -> tuple[np.ndarray, np.ndarray, float]:
    """The keypoint demo's 90-point problem: its mixed cost, its keypoint mask and its ``eps``."""
    x, y, pairs = make_problem()
    _, cost = keypoint_cost(x, y, pairs)
    return cost(x, y), no.keypoint_mask(len(x), len(y), pairs), EPS


def table(record: dict) -> str:
    """The record as the docs' RST table: median ms of each way, and the speed-ups of the shipped solver."""
    from otpr_sb3.benchmark.report_rst import list_table

    rows = []
    for r in record["rows"]:
        callers, shipped, pot = r["callers_threads_median_ms"], r["shipped_median_ms"], r["pot_median_ms"]
        rows.append(
            [r["case"], f"{callers:.2f}", f"{shipped:.2f}", f"{pot:.2f}", f"{callers / shipped:.2f}x", f"{pot / shipped:.2f}x"]
        )
    threads = record["args"]["threads"]
    headers = [
        "problem",
        f"neural_ot on {threads} torch threads [ms]",
        "neural_ot as shipped [ms]",
        "POT [ms]",
        f"shipped vs {threads} threads",
        "shipped vs POT",
    ]
    return list_table(headers, rows)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(args.threads)
    cases = [("keypoint demo, masked, n = 90", *masked_demo())]
    cases += [(f"L2 exact, n = {n}", _problem(n), None, 0.05) for n in (100, 300, 500)]
    rows = []
    for name, M, mask, eps in cases:
        n = M.shape[0]
        a = np.full(n, 1.0 / n)
        M_pot = M if mask is None else M + 10.0 * (1 - mask)
        times: dict[str, list[float]] = {"callers_threads": [], "shipped": [], "pot": []}
        for _ in range(args.repeats):
            for mode in ("callers_threads", "shipped"):
                _threads.ONE_THREAD_PAIRS = 0 if mode == "callers_threads" else ONE_THREAD_PAIRS
                t0 = time.perf_counter()
                no.solve_discrete(a, a, M, eps, mask=mask)
                times[mode].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ot.smooth.smooth_ot_dual(a, a, M_pot, 2 * eps * n * n, reg_type="l2", stopThr=1e-12, numItermax=5000)
                times["pot"].append(time.perf_counter() - t0)
        _threads.ONE_THREAD_PAIRS = ONE_THREAD_PAIRS
        row: dict[str, object] = {"case": name}
        for mode, values in times.items():
            row[f"{mode}_median_ms"] = 1e3 * float(np.median(values))
            row[f"{mode}_best_ms"] = 1e3 * min(values)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        from otpr_sb3.benchmark.provenance import git_state

        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "git": git_state(), "torch": th.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
