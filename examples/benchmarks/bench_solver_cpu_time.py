"""CPU time of the exact L2 solver on the L2 table's problems, at two checkouts of neural_ot, alternated.

When other processes share the machine, wall-clock times say more about them than about a solver change. This script
compares two checkouts (``--before DIR`` and ``--after DIR``, each a clone of this repository) in CPU time of one
thread (``time.process_time``): ``--rounds`` times, a fresh process per checkout imports that checkout's neural_ot and
solves each problem of ``bench_neural_ot.py``'s L2 table (``n = 500, 1000, 2000``, POT reg 0.1 and 0.01) once untimed
and ``--repeats`` times timed, keeping the fastest; the record holds every round's times, iterations and errors, and
the table the medians over rounds::

    python examples/benchmarks/bench_solver_cpu_time.py --before ../base --after . --out docs/data/bench_cpu.json
    python examples/benchmarks/bench_solver_cpu_time.py --table docs/data/bench_cpu.json > docs/bench_cpu.inc
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from record_cli import printed_table, record_parser, write_record  # noqa: E402

SIZES = (500, 1000, 2000)
POT_REGS = (0.1, 0.01)


def one_round(root: str, repeats: int) -> dict[str, Any]:
    """Solve every problem with the neural_ot of checkout ``root`` (this process must not have imported another)."""
    sys.path.insert(0, root)
    import torch as th
    from bench_neural_ot import _problem

    import neural_ot as no

    if not os.path.abspath(no.__file__).startswith(os.path.abspath(root)):
        raise RuntimeError(f"neural_ot came from {no.__file__}, not from {root}")
    th.set_num_threads(1)
    out: dict[str, Any] = {}
    for n in SIZES:
        M = _problem(n)
        a = b = np.full(n, 1.0 / n)
        for reg in POT_REGS:
            eps = reg / (2 * n * n)
            no.solve_discrete(a, b, M, eps)
            times = []
            for _ in range(repeats):
                t0 = time.process_time()
                res = no.solve_discrete(a, b, M, eps)
                times.append(time.process_time() - t0)
            out[f"{n}/{reg}"] = {"cpu_s": min(times), "n_iter": res.n_iter, "error": res.marginal_error}
    return out


def _commit(root: str) -> str:
    return subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def medians(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Median CPU seconds over rounds, per side (``"before"``, ``"after"``) and problem (``"n/reg"``)."""
    rows = record["rows"]
    return {s: {k: float(np.median([r[s][k]["cpu_s"] for r in rows])) for k in rows[0][s]} for s in ("before", "after")}


def ratios(record: dict[str, Any]) -> dict[str, float]:
    """Median CPU time after over median CPU time before, per problem (``"n/reg"``)."""
    med = medians(record)
    return {k: med["after"][k] / med["before"][k] for k in med["before"]}


def table(record: dict[str, Any]) -> str:
    """The docs table (list-table): median CPU seconds over rounds, before and after, and their ratio."""
    first = record["rows"][0]
    med = medians(record)
    head = ["n = m", "POT reg", "before [CPU s]", "after [CPU s]", "after / before", "iterations (before, after)"]
    cells = []
    for key, ratio in ratios(record).items():
        n, reg = key.split("/")
        iters = f"{first['before'][key]['n_iter']}, {first['after'][key]['n_iter']}"
        cells.append([n, reg, f"{med['before'][key]:.3f}", f"{med['after'][key]:.3f}", f"{ratio:.2f}", iters])
    # Imported here: otpr_sb3 imports neural_ot, which a measuring process must import from its own checkout.
    from otpr_sb3.benchmark.report_rst import list_table

    return list_table(head, cells)


def main() -> None:
    parser = record_parser(__doc__ or "")
    parser.add_argument("--before", help="checkout of the earlier code")
    parser.add_argument("--after", help="checkout of the code measured against it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS, default=None)  # one round of one checkout (internal)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_round(args.one, args.repeats)))
        return
    if printed_table(args, table):
        return
    rows = []
    for _ in range(args.rounds):
        row = {}
        for side in ("before", "after"):
            cmd = [sys.executable, os.path.abspath(__file__), "--one", getattr(args, side), "--repeats", str(args.repeats)]
            row[side] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        rows.append(row)
    commits = {side: _commit(getattr(args, side)) for side in ("before", "after")}
    if args.out:
        write_record(args.out, args, rows, commits=commits)
    print(table({"rows": rows}), end="")


if __name__ == "__main__":
    main()
