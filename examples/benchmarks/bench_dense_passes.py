"""Torch against numpy on the boolean passes of the exact L2 solver: comparisons, counts and 0/1 indicators.

The Newton stages and the working set compare an ``(n, m)`` matrix with a threshold several times per iteration
(``z > 0``, the curvature's active pairs, the counts that pick a stage). On the CPU, :mod:`neural_ot._dual_problem`
does these with numpy on the tensors' memory (``above``, ``count_true``, ``count_above``; ``indicator`` into
float32), and with torch where numpy was not faster. This script times each operation both ways on the same
``(n, n)`` float64 matrix (about 10% of it positive, as in a late stage), in CPU time of one thread
(``time.process_time``, so that other processes on the machine inflate it little), median of ``--repeats``::

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_cli import printed_table, record_parser, write_record  # noqa: E402

from otpr_sb3.benchmark.report_rst import list_table


def _cpu_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def operations(n: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], str]]:
    """Each operation as ``(torch, numpy, the one neural_ot's CPU path takes)`` on one ``(n, n)`` matrix."""
    gen = th.Generator().manual_seed(0)
    z = th.randn(n, n, generator=gen, dtype=th.float64) - 1.28  # about 10% positive
    positive = z > 0
    zn, pn = z.numpy(), positive.numpy()
    f32, f64 = th.empty(n, n, dtype=th.float32), th.empty(n, n, dtype=th.float64)
    return {
        "z > 0 (new boolean)": (lambda: z > 0, lambda: th.from_numpy(np.greater(zn, 0.0)), "numpy"),
        "count of z > 0": (lambda: int(th.count_nonzero(z > 0)), lambda: int(np.count_nonzero(np.greater(zn, 0.0))), "numpy"),
        "0/1 of z > 0 into float32": (
            lambda: f32.copy_(th.gt(z, 0.0, out=f64)),
            lambda: np.greater(zn, 0.0, out=f32.numpy(), casting="unsafe"),
            "numpy",
        ),
        "0/1 of z > 0 into float64": (
            lambda: th.gt(z, 0.0, out=f64),
            lambda: np.greater(zn, 0.0, out=f64.numpy(), casting="unsafe"),
            "torch",
        ),
        "row counts of a boolean": (lambda: positive.sum(1), lambda: pn.view(np.uint8).sum(1, dtype=np.int32), "numpy"),
        "column counts of a boolean": (lambda: positive.sum(0), lambda: pn.view(np.uint8).sum(0, dtype=np.int32), "numpy"),
    }


def _same(x: Any, y: Any) -> bool:
    return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def measure(sizes: tuple[int, ...], repeats: int) -> list[dict[str, Any]]:
    """CPU milliseconds of each operation by torch and by numpy at each size (one torch thread)."""
    th.set_num_threads(1)
    rows = []
    for n in sizes:
        for name, (torch_op, numpy_op, used) in operations(n).items():
            assert _same(np.asarray(torch_op()), np.asarray(numpy_op())), name
            row = {"n": n, "operation": name, "torch_ms": _cpu_ms(torch_op, repeats)}
            rows.append({**row, "numpy_ms": _cpu_ms(numpy_op, repeats), "neural_ot": used})
    return rows


def table(record: dict[str, Any]) -> str:
    """The docs table (list-table) of a record."""
    head = ["n = m", "operation", "torch [ms]", "numpy [ms]", "torch / numpy", "neural_ot's CPU path"]
    rows = [
        [str(r["n"]), r["operation"], f"{r['torch_ms']:.2f}", f"{r['numpy_ms']:.2f}", f"{r['torch_ms'] / r['numpy_ms']:.1f}x"]
        + [r["neural_ot"]]
        for r in record["rows"]
    ]
    return list_table(head, rows)


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
