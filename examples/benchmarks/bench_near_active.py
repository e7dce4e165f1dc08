"""Exact L2 solves before and after near-active pairs joined the Newton curvature: status, iterations and time.

Near a degenerate optimum (small eps: many pairs at the kink ``z = 0``), the curvature of the active pairs alone
flips those pairs in and out of the active set at every step, and the working-set Newton crawled until the stall
detector stopped it (``n = 600``, POT ``reg = 0.01``: marginal error 1.95e-9 against the tolerance 1e-9). The
pairs just below the kink now carry curvature too (``neural_ot._newton_system._NEAR_ACTIVE``), the working set is
used up to a quarter of active pairs (was 5%), and a stall needs the dual to stop improving too (a slow far phase
at a large continuation ratio was stopped). Run the script once per checkout (``PYTHONPATH``
chooses which ``neural_ot`` is imported), alternating, into one record::

    PYTHONPATH=/path/to/old/checkout python examples/benchmarks/bench_near_active.py --label before \\
        --out docs/data/bench_near_active.json
    python examples/benchmarks/bench_near_active.py --label after --out docs/data/bench_near_active.json
    python examples/benchmarks/bench_near_active.py --table docs/data/bench_near_active.json > docs/bench_near_active.inc

The label ``stages`` is the later change of the L2 continuation (ratio 300, intermediate stages handing over at a
marginal error of 1e-2; was 30 and 1e-4), compared with ``after`` by ``--compare after stages``
(``docs/bench_continuation.inc``). The labels ``base`` and ``passes`` compare the solver before and after fewer dense
passes per Newton iteration (buffers for the working set, one compaction per curvature, the full matrix left for a
working set within a stage), measured together (``--compare base passes``, ``docs/bench_passes.inc``). The labels
``unshared`` and ``buffers`` compare the solver before and after the result's plan took over the Newton buffers and
the coarse stages' products ran in float32 (``--compare unshared buffers``, ``docs/bench_buffers.inc``).

Problems: the L2 table's (squared Euclidean between Gaussian clouds, ``n = m``, POT ``reg`` 0.1 and 0.01,
``eps = reg / (2 n m)``), ``n`` from 600 to 2000; then the stall sweep: 60 problems (five shapes from 60 x 60 to
700 x 700, four cost kinds, random weights, three regs) solved with the working set forced on from 1,000 pairs,
at the continuation ratios 30 (the default), 100 and 300, counting the solves that do not converge.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch as th

import neural_ot as no
import neural_ot._newton as newton

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neural_ot import _problem  # noqa: E402
from record_cli import checkout, printed_table, record_parser, save_label  # noqa: E402

PROBLEMS = [(600, 0.01), (1000, 0.1), (1000, 0.01), (2000, 0.1), (2000, 0.01)]
RATIOS = (30.0, 100.0, 300.0)


def measure(n: int, pot_reg: float, repeats: int) -> dict[str, object]:
    """Median time of ``repeats`` solves of one problem, with its status, iterations and marginal error."""
    M = _problem(n)
    a = np.full(n, 1.0 / n)
    eps = pot_reg / (2 * n * n)
    no.solve_discrete(a, a, M, eps)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = no.solve_discrete(a, a, M, eps)
        times.append(time.perf_counter() - t0)
    return {
        "n": n,
        "pot_reg": pot_reg,
        "median_ms": 1e3 * float(np.median(times)),
        "status": res.status,
        "n_iter": res.n_iter,
        "marginal_error": max(res.marginal_errors),
        "value": res.value,
    }


def sweep_cases(pot_regs: tuple[float, ...] = (1e-1, 1e-2, 1e-3)) -> list[tuple]:
    """The stall sweep's problems ``(n, m, cost kind, POT reg, M, a, b)``: five shapes, four cost kinds, random weights.

    The same problems at every choice of ``pot_regs`` (the random draws do not depend on it).
    """
    rng = np.random.default_rng(0)
    cases = []
    for n, m in [(60, 60), (100, 80), (300, 300), (400, 250), (700, 700)]:
        for kind in ("sqeuclidean 2-D", "sqeuclidean 10-D", "uniform", "integer"):
            if kind.startswith("sqeuclidean"):
                d = int(kind.split()[1][:-2])
                x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5
                M = ((x[:, None] - y[None]) ** 2).sum(-1)
                M /= M.max()
            elif kind == "uniform":
                M = rng.uniform(size=(n, m))
            else:  # ties everywhere: a degenerate optimum
                M = rng.integers(0, 5, size=(n, m)).astype(float) / 4
            a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
            for reg in pot_regs:
                cases.append((n, m, kind, reg, M, a / a.sum(), b / b.sum()))
    return cases


def stall_sweep() -> list[dict[str, object]]:
    """The 60 problems at each continuation ratio, working set forced on: how many solves do not converge."""
    cases = sweep_cases()
    saved = newton._CONTINUATION, newton._WORKING_SET_MIN_PAIRS
    rows = []
    try:
        newton._WORKING_SET_MIN_PAIRS = 1000
        for ratio in RATIOS:
            newton._CONTINUATION = ratio
            failed = []
            for n, m, kind, reg, M, a, b in cases:
                res = no.solve_discrete(a, b, M, reg / (2 * n * m))
                if res.status != "converged":
                    failed.append({"n": n, "m": m, "cost": kind, "pot_reg": reg, "status": res.status,
                                   "marginal_error": max(res.marginal_errors)})  # fmt: skip
            rows.append({"ratio": ratio, "problems": len(cases), "not_converged": failed})
    finally:
        newton._CONTINUATION, newton._WORKING_SET_MIN_PAIRS = saved
    return rows


def table(record: dict, labels: tuple[str, str] = ("before", "after")) -> str:
    """The record as the docs' RST tables: each problem under two labels, and the stall sweep of each."""
    from otpr_sb3.benchmark.report_rst import list_table

    before, after = ({(r["n"], r["pot_reg"]): r for r in record[k]["rows"]} for k in labels)
    body = []
    for key, b in before.items():
        x = after[key]
        body.append(
            [
                f"{key[0]}",
                f"{key[1]:g}",
                f"{b['status']}, {b['n_iter']}, {b['marginal_error']:.1e}",
                f"{x['status']}, {x['n_iter']}, {x['marginal_error']:.1e}",
                f"{b['median_ms']:.0f}",
                f"{x['median_ms']:.0f}",
                f"{b['median_ms'] / x['median_ms']:.2f}x",
            ]
        )
    first, second = labels
    headers = [
        "n = m", "POT reg", f"{first}: status, iterations, error", second, f"{first} [ms]", f"{second} [ms]", "speed-up",
    ]  # fmt: skip
    out = list_table(headers, body)
    sweeps = [
        [k, f"{s['ratio']:g}", f"{len(s['not_converged'])} of {s['problems']}"]
        for k in labels
        for s in record[k]["stall_sweep"]
    ]
    return out + "\n" + list_table(["code", "continuation ratio", "solves not converged"], sweeps)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--label", choices=["before", "after", "stages", "base", "passes", "unshared", "buffers"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", nargs=2, default=["before", "after"], help="the two labels the table compares")
    args = parser.parse_args()
    if printed_table(args, table, tuple(args.compare)):
        return
    th.set_num_threads(1)
    rows = []
    for n, pot_reg in PROBLEMS:
        rows.append(measure(n, pot_reg, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    sweep = stall_sweep()
    print(json.dumps(sweep), flush=True)
    if args.out:
        entry = {"rows": rows, "stall_sweep": sweep, "git": checkout(no.__file__), "torch": th.__version__, "threads": 1}
        save_label(args.out, args.label, entry)


if __name__ == "__main__":
    main()
