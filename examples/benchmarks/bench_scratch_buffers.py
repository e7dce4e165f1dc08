"""Exact L2 solves of two checkouts, before and after a change of their (n, m) allocations: time and page faults.

A fresh ``(n, m)`` tensor of a few MiB costs a page fault per 4 KiB once glibc has returned freed memory to the
system, which it does between Newton iterations; from ``n = 500`` up that was a large share of a solve. First used
for the Newton iterations' reused buffers (``docs/data/bench_scratch_buffers.json``), then for the temporaries they
still made (``docs/data/bench_fewer_temporaries.json``, ``--clock cpu``: measured beside study runs, where the
process's CPU time is steadier than the wall-clock). Run the script once per checkout (``PYTHONPATH`` chooses which
``neural_ot`` is imported) into one record::

    PYTHONPATH=/path/to/old/checkout python examples/benchmarks/bench_scratch_buffers.py --label before \\
        --out docs/data/bench_scratch_buffers.json
    python examples/benchmarks/bench_scratch_buffers.py --label after --out docs/data/bench_scratch_buffers.json
    python examples/benchmarks/bench_scratch_buffers.py --table docs/data/bench_scratch_buffers.json \\
        > docs/bench_scratch_buffers.inc

Problems: the dense ``L2 exact`` ones of :mod:`bench_small_alternating` (``eps = 0.05``, most pairs active),
alternated with POT's ``smooth_ot_dual`` in the same process, and the L2 table's ``n = 1000, 2000`` problems (POT
``reg`` 0.01 and 0.1; neural_ot alone, POT takes seconds there). Minor page faults are counted with ``getrusage``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np
import ot
import torch as th

import neural_ot as no

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neural_ot import _problem  # noqa: E402
from record_cli import checkout, printed_table, record_parser, save_label  # noqa: E402


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(n: int, pot_reg: float | None, repeats: int, clock: str = "wall") -> dict[str, object]:
    """Median time and page faults per solve of one problem (``pot_reg=None``: ``eps = 0.05``, with POT alternating).

    ``clock``: ``"wall"`` (``perf_counter``) or ``"cpu"`` (this process's CPU time, ``process_time``).
    """
    now = time.perf_counter if clock == "wall" else time.process_time
    M = _problem(n)
    a = np.full(n, 1.0 / n)
    eps = 0.05 if pot_reg is None else pot_reg / (2 * n * n)
    no.solve_discrete(a, a, M, eps)  # first call of the process: imports and warm-up
    times, pot_times, faults = [], [], []
    for _ in range(repeats):
        f0, t0 = _faults(), now()
        res = no.solve_discrete(a, a, M, eps)
        times.append(now() - t0)
        faults.append(_faults() - f0)
        if pot_reg is None:
            t0 = now()
            ot.smooth.smooth_ot_dual(a, a, M, 2 * eps * n * n, reg_type="l2", stopThr=1e-12, numItermax=5000)
            pot_times.append(now() - t0)
    row: dict[str, object] = {
        "n": n,
        "eps": eps,
        "pot_reg": pot_reg,
        "median_ms": 1e3 * float(np.median(times)),
        "faults_per_solve": float(np.median(faults)),
        "n_iter": res.n_iter,
        "marginal_error": max(res.marginal_errors),
    }
    if pot_times:
        row["pot_median_ms"] = 1e3 * float(np.median(pot_times))
    return row


def table(record: dict) -> str:
    """The record as the docs' RST table: each problem before and after, and the speed-ups."""
    from otpr_sb3.benchmark.report_rst import list_table

    before, after = ({(r["n"], r["pot_reg"]): r for r in record[k]["rows"]} for k in ("before", "after"))
    body = []
    for key, b in before.items():
        n, pot_reg = key
        x = after[key]
        pot = "" if "pot_median_ms" not in x else f"{x['pot_median_ms'] / x['median_ms']:.2f}x"
        body.append(
            [
                f"{n}",
                "0.05 (dense)" if pot_reg is None else f"POT reg {pot_reg:g}",
                f"{b['median_ms']:.1f}",
                f"{x['median_ms']:.1f}",
                f"{b['median_ms'] / x['median_ms']:.2f}x",
                f"{b['faults_per_solve']:.0f}",
                f"{x['faults_per_solve']:.0f}",
                pot,
            ]
        )
    headers = ["n = m", "eps", "before [ms]", "after [ms]", "speed-up", "page faults before", "page faults after"]
    headers.append("after vs POT")
    return list_table(headers, body)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--label", choices=["before", "after"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall-clock, or this process's CPU time")
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(1)
    problems: list[tuple[int, float | None]] = [(100, None), (300, None), (500, None)]
    problems += [(n, reg) for n in (1000, 2000) for reg in (0.01, 0.1)]
    rows = []
    for n, pot_reg in problems:
        rows.append(measure(n, pot_reg, args.repeats if n <= 1000 else max(3, args.repeats // 3), args.clock))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        entry = {"rows": rows, "git": checkout(no.__file__), "torch": th.__version__, "threads": 1, "clock": args.clock}
        save_label(args.out, args.label, entry)


if __name__ == "__main__":
    main()
