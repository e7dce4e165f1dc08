"""Relaxed (unbalanced and semi-relaxed) exact solves on random problems: how many converge, and in what time.

``solve(..., unbalanced=...)`` on ``--cases`` random problems drawn from ``--seed``: sizes 1-59 x 1-49, costs of scale
1e-5 to 1e3 (a fifth of them shifted to negative values), weights of unequal mass (a fifth of them with row weights
uniform on [0, 1), no floor, so some near zero), both regularisers at ``reg`` 1e-4 to 10 times the costs' scale,
``rho`` 1e-3 to 1e4 times the costs' scale on both sides, one side or each side apart, and a random mask on three in
ten. A solve fails when it does not converge, when it raises anything but a refusal of its input (a ``ValueError``
naming the argument), when its plan or value is not finite, or when it claims convergence with a relative duality gap
above 1e-7 or a negative marginal error (a false convergence). Run it on any checkout of ``neural_ot`` (the record
names the one it ran)::

    python examples/benchmarks/bench_relaxed.py --out docs/data/bench_relaxed.json
    PYTHONPATH=/path/to/older/checkout python examples/benchmarks/bench_relaxed.py --out docs/data/bench_relaxed-before.json
    python examples/benchmarks/bench_relaxed.py --table docs/data/bench_relaxed.json

``--clouds`` draws larger problems instead (:func:`cloud_cases`: 150 to 1000 points, Gaussian clouds)::

    python examples/benchmarks/bench_relaxed.py --clouds --cases 40 --out docs/data/bench_relaxed-clouds.json

``--only`` solves some of the drawn cases again (their rows carry ``case``, the index), e.g. a record's failures on
another CPU kind::

    python examples/benchmarks/bench_relaxed.py --clouds --cases 40 --only 22 3 \\
        --out docs/data/bench_relaxed-clouds-amd-epyc.json
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch as th

import neural_ot as no

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_cli import checkout, printed_table, record_parser, write_record  # noqa: E402


def cases(seed: int, count: int) -> list[dict[str, Any]]:
    """The random problems, as keyword arguments of ``neural_ot.solve`` plus a description."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n, m = int(rng.integers(1, 60)), int(rng.integers(1, 50))
        scale = 10.0 ** rng.uniform(-5, 3)
        M = rng.random((n, m)) * scale
        if rng.random() < 0.2:
            M -= scale / 2
        a = rng.random(n) + (0.0 if rng.random() < 0.2 else 0.05)
        b = (rng.random(m) + 0.05) * 10 ** rng.uniform(-1, 1)
        if a.sum() == 0:
            a[0] = 1.0
        reg_type = str(rng.choice(["l2", "entropic"]))
        reg = scale * 10 ** rng.uniform(-4, 1)
        rho = scale * 10 ** rng.uniform(-3, 4)
        unbalanced = [rho, (math.inf, rho), (rho, math.inf), (rho, rho * 10 ** rng.uniform(-2, 2))][int(rng.integers(4))]
        mask = (rng.random((n, m)) > 0.3).astype(float) if rng.random() < 0.3 else None
        kwargs = dict(M=M, a=a, b=b, reg=reg, reg_type=reg_type, unbalanced=unbalanced, mask=mask)
        rho_min = min(r for r in np.atleast_1d(unbalanced) if r != math.inf)
        out.append({"kwargs": kwargs, "n": n, "m": m, "reg_over_scale": reg / scale, "rho_over_reg": rho_min / reg})
    return out


def cloud_cases(seed: int, count: int) -> list[dict[str, Any]]:
    """Point-cloud problems of 150 to 1000 points: squared Euclidean costs (max 1) between two Gaussian clouds.

    Weights of unequal mass; three in four L2 at POT's reg 1e-3 to 1 (``reg = r / (2 n m)``), the rest entropic at
    ``reg`` 1e-3 to 1e-1; ``rho`` 1e-3 to 1e3 on both sides, the columns only or the rows only, in turn.
    """
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        n = int(rng.choice([150, 250, 400, 700, 1000]))
        m = int(n * rng.uniform(0.8, 1.2))
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
        M = ((x[:, None] - y[None]) ** 2).sum(-1)
        a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
        a, b = a / a.sum(), b / b.sum() * 10 ** rng.uniform(-0.3, 0.3)
        reg_type = "entropic" if k % 4 == 0 else "l2"
        reg = 10 ** rng.uniform(-3, -1) if reg_type == "entropic" else 10 ** rng.uniform(-3, 0) / (2 * n * m)
        rho = 10 ** rng.uniform(-3, 3)
        unbalanced = [rho, (math.inf, rho), (rho, math.inf)][k % 3]
        kwargs = dict(M=M / M.max(), a=a, b=b, reg=reg, reg_type=reg_type, unbalanced=unbalanced, mask=None)
        out.append({"kwargs": kwargs, "n": n, "m": m, "reg_over_scale": reg, "rho_over_reg": rho / reg})
    return out


def solve_case(case: dict[str, Any]) -> dict[str, Any]:
    """Solve one case; the row of the record (status, iterations, errors, gap, time, and whether it failed)."""
    row = {k: case[k] for k in ("n", "m", "reg_over_scale", "rho_over_reg")}
    row.update(reg_type=case["kwargs"]["reg_type"], masked=case["kwargs"]["mask"] is not None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            res = no.solve(**case["kwargs"])
        except Exception as e:  # noqa: BLE001 - a refusal names its argument (`mask`, ...); anything else failed
            if isinstance(e, ValueError) and str(e).startswith("`"):
                return {**row, "refused": str(e)[:120]}
            return {**row, "seconds": time.perf_counter() - t0, "error": f"{type(e).__name__}: {str(e)[:120]}",
                    "status": "error", "n_iter": 0, "marginal_error": math.nan, "relative_gap": math.nan,
                    "failed": True, "false_convergence": False}  # fmt: skip
        row["seconds"] = time.perf_counter() - t0
    gap = abs(res.value - res.value_dual) / max(1e-300, abs(res.value) + abs(res.value_dual))
    finite = bool(np.isfinite(res.plan).all()) and math.isfinite(res.value)
    false_convergence = res.converged and (gap > 1e-7 or min(res.marginal_errors) < 0)
    row.update(
        status=res.status,
        n_iter=int(res.n_iter),
        marginal_error=float(max(res.marginal_errors)),
        relative_gap=float(gap),
        failed=bool(not res.converged or not finite or false_convergence),
        false_convergence=bool(false_convergence),
        rounding_floor=any("rounding floor" in str(w.message) for w in caught),  # the solver's note on a stall
    )
    return row


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Counts and total time of a record."""
    solved = [r for r in record["rows"] if "refused" not in r]
    failed = [r for r in solved if r["failed"]]
    return {
        "solves": len(solved),
        "failed": len(failed),
        "false_convergence": sum(r["false_convergence"] for r in solved),
        "errors": sum("error" in r for r in solved),
        "seconds": sum(r["seconds"] for r in solved),
        "over_100_iterations": sum(r["n_iter"] > 100 for r in solved),
        "failed_min_rho_over_reg": min((r["rho_over_reg"] for r in failed), default=None),
    }


def table(record: dict[str, Any]) -> str:
    """The failed solves of a record as an RST table."""
    from otpr_sb3.benchmark.report_rst import list_table

    rows = [
        [f"{r['n']} x {r['m']}", r["reg_type"], f"{r['reg_over_scale']:.1e}", f"{r['rho_over_reg']:.1e}",
         r["status"], str(r["n_iter"]), f"{r['marginal_error']:.1e}", f"{r['relative_gap']:.0e}"]
        for r in record["rows"] if r.get("failed")
    ]  # fmt: skip
    headers = ["size", "reg_type", "reg / scale", "min rho / reg", "status", "iterations", "error", "gap"]
    return list_table(headers, rows)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=150)
    parser.add_argument("--clouds", action="store_true", help="the point-cloud family (150-1000 points) instead")
    parser.add_argument("--only", type=int, nargs="+", default=None, help="solve only these cases (indices)")
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(1)
    family = cloud_cases if args.clouds else cases
    rows = []
    for i, case in enumerate(family(args.seed, args.cases)):
        if args.only is None or i in args.only:
            rows.append({**({"case": i} if args.only is not None else {}), **solve_case(case)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(summary({"rows": rows})))
    if args.out:
        write_record(args.out, args, rows, solver=checkout(no.__file__))


if __name__ == "__main__":
    main()
