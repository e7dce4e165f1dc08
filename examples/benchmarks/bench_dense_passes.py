"""Torch against numpy on the boolean passes of the exact L2 solver: comparisons, counts and 0/1 indicators.

The Newton stages and the working set compare an ``(n, m)`` matrix with a threshold several times per iteration
(``z > 0``, the curvature's active pairs, the counts that pick a stage). On the CPU, :mod:`neural_ot._dual_problem`
does these with numpy on the tensors' memory (``above``, ``count_true``, ``count_above``, ``indicator``). This script
times each operation both ways on the same ``(n, n)`` float64 matrix (about 10% of it positive, as in a late stage),
in CPU time of one thread (``time.process_time``, so that other processes on the machine inflate it little), median
of ``--repeats``::

    python examples/benchmarks/bench_dense_passes.py --out docs/data/bench_dense_passes.json
    python examples/benchmarks/bench_dense_passes.py --table docs/data/bench_dense_passes.json > docs/bench_dense_passes.inc
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

from neural_ot._dual_problem import above, count_above, count_true, indicator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_cli import printed_table, record_parser, write_record  # noqa: E402


def _cpu_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def operations(n: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """Each operation as ``(torch, neural_ot's CPU path)`` on one ``(n, n)`` matrix; both give the same result."""
    gen = th.Generator().manual_seed(0)
    z = th.randn(n, n, generator=gen, dtype=th.float64) - 1.28  # about 10% positive
    positive = z > 0
    f32, f64 = th.empty(n, n, dtype=th.float32), th.empty(n, n, dtype=th.float64)
    return {
        "z > 0 (new boolean)": (lambda: z > 0, lambda: above(z)),
        "count of z > 0": (lambda: int(th.count_nonzero(z > 0)), lambda: count_above(z)),
        "0/1 of z > 0 into float32": (lambda: f32.copy_(th.gt(z, 0.0, out=f64)), lambda: indicator(z, 0.0, f32)),
        "0/1 of z > 0 into float64": (lambda: th.gt(z, 0.0, out=f64), lambda: indicator(z, 0.0, f64)),
        "row counts of a boolean": (lambda: positive.sum(1), lambda: count_true(positive, 1)),
        "column counts of a boolean": (lambda: positive.sum(0), lambda: count_true(positive, 0)),
    }


def measure(sizes: tuple[int, ...], repeats: int) -> list[dict[str, Any]]:
    """CPU milliseconds of each operation, torch's and neural_ot's, at each size (one torch thread)."""
    th.set_num_threads(1)
    rows = []
    for n in sizes:
        for name, (torch_op, ours) in operations(n).items():
            ref, got = torch_op(), ours()
            assert th.equal(th.as_tensor(ref).to(th.as_tensor(got).dtype), th.as_tensor(got)), name
            row = {"n": n, "operation": name, "torch_ms": _cpu_ms(torch_op, repeats)}
            rows.append({**row, "numpy_ms": _cpu_ms(ours, repeats)})
    return rows


def table(record: dict[str, Any]) -> str:
    """The docs table (list-table) of a record."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - n = m",
        "     - operation",
        "     - torch [ms]",
        "     - numpy, neural_ot's CPU path [ms]",
        "     - ratio",
    ]
    for row in record["rows"]:
        lines += [
            f"   * - {row['n']}",
            f"     - {row['operation']}",
            f"     - {row['torch_ms']:.2f}",
            f"     - {row['numpy_ms']:.2f}",
            f"     - {row['torch_ms'] / row['numpy_ms']:.1f}x",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = record_parser(__doc__ or "")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    if printed_table(args, table):
        return
    rows = measure(tuple(args.sizes), args.repeats)
    if args.out:
        write_record(args.out, args, rows)
    print(table({"rows": rows}), end="")


if __name__ == "__main__":
    main()
