"""Exact L2 solves with and without the tree shifts of ``neural_ot._tree_shifts``: status, iterations and time.

Near the unregularised limit the active pairs of a Newton iterate can form trees of unequal mass, along which the
damped Newton step crawls; the stage now shifts such trees exactly once its error has not halved in
``_newton._SHIFT_AFTER`` iterations. The script alternates the two (the shifts switched off by raising that count),
in one process, at the shipped settings, on:

- the stall sweep of ``bench_near_active.py`` (five shapes from 60 x 60 to 700 x 700, four cost kinds, random
  weights) at POT regs 0.1, 0.01, 1e-3 and 1e-5, counting the solves that do not converge and their iterations;
- the L2 table's problems (``n = 1000, 2000``, POT reg 0.1 and 0.01), median time of ``--repeats`` solves::

    python examples/benchmarks/bench_tree_shifts.py --out docs/data/bench_tree_shifts.json
    python examples/benchmarks/bench_tree_shifts.py --table docs/data/bench_tree_shifts.json > docs/bench_tree_shifts.inc
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch as th

import neural_ot as no
import neural_ot._newton as newton

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_near_active import sweep_cases  # noqa: E402
from bench_neural_ot import _problem  # noqa: E402
from record_cli import printed_table, record_parser  # noqa: E402

POT_REGS = (1e-1, 1e-2, 1e-3, 1e-5)
MODES = ("off", "on")


def _solve(mode: str, *args: Any) -> tuple[no.OTResult, float]:
    saved = newton._SHIFT_AFTER
    newton._SHIFT_AFTER = saved if mode == "on" else 10**9
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t0 = time.perf_counter()
            res = no.solve_discrete(*args)
            return res, time.perf_counter() - t0
    finally:
        newton._SHIFT_AFTER = saved


def sweep() -> list[dict[str, Any]]:
    """Every sweep problem with the shifts off and on: status, Newton iterations, seconds, marginal error."""
    rows = []
    for n, m, kind, reg, M, a, b in sweep_cases(POT_REGS):
        row: dict[str, Any] = {"n": n, "m": m, "cost": kind, "pot_reg": reg}
        for mode in MODES:
            res, seconds = _solve(mode, a, b, M, reg / (2 * n * m))
            row[mode] = {"status": res.status, "n_iter": res.n_iter, "s": seconds, "error": max(res.marginal_errors)}
        rows.append(row)
    return rows


def table_problems(repeats: int) -> list[dict[str, Any]]:
    """The L2 table's problems: median seconds of ``repeats`` solves with the shifts off and on (alternating)."""
    rows = []
    for n in (1000, 2000):
        M, a = _problem(n), np.full(n, 1.0 / n)
        for reg in (0.1, 0.01):
            eps = reg / (2 * n * n)
            _solve("on", a, a, M, eps)  # first call: page faults of fresh buffers
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            iters = {}
            for _ in range(repeats):
                for mode in MODES:
                    res, seconds = _solve(mode, a, a, M, eps)
                    times[mode].append(seconds)
                    iters[mode] = (res.status, res.n_iter)
            row: dict[str, Any] = {"n": n, "pot_reg": reg, "shift_calls": _shift_calls(a, M, eps)}
            for mode in MODES:
                row[mode] = {"status": iters[mode][0], "n_iter": iters[mode][1], "median_s": float(np.median(times[mode]))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _shift_calls(a: np.ndarray, M: np.ndarray, eps: float) -> dict[str, float]:
    """How often one solve with the shifts on calls them, and their seconds in all."""
    run, calls = newton.tree_shifts, {"calls": 0, "s": 0.0}

    def counted(*args: Any) -> Any:
        t0 = time.perf_counter()
        out = run(*args)
        calls["calls"] += 1
        calls["s"] += time.perf_counter() - t0
        return out

    newton.tree_shifts = counted
    try:
        _solve("on", a, a, M, eps)
    finally:
        newton.tree_shifts = run
    return calls


def table(record: dict[str, Any]) -> str:
    """The sweep per POT reg, then the L2 table's problems, as RST tables."""
    from otpr_sb3.benchmark.report_rst import list_table

    rows = []
    for reg in POT_REGS:
        group = [r for r in record["sweep"] if r["pot_reg"] == reg]
        cells = [f"{reg:g}", str(len(group))]
        for mode in MODES:
            failed = sum(r[mode]["status"] != "converged" for r in group)
            iters = [r[mode]["n_iter"] for r in group]
            cells += [str(failed), f"{np.median(iters):.0f}", str(max(iters)), f"{sum(r[mode]['s'] for r in group):.1f}"]
        rows.append(cells)
    headers = ["POT reg", "problems"]
    for mode in MODES:
        headers += [f"not converged ({mode})", f"median iterations ({mode})", f"most ({mode})", f"total s ({mode})"]
    out = list_table(headers, rows) + "\n"
    rows = [
        [str(r["n"]), f"{r['pot_reg']:g}"]
        + [f"{r[mode]['median_s']:.3f}" for mode in MODES]
        + [f"{r['off']['median_s'] / r['on']['median_s']:.2f}x", f"{r['off']['n_iter']} / {r['on']['n_iter']}"]
        + [f"{r['shift_calls']['calls']} ({1e3 * r['shift_calls']['s']:.0f} ms)"]
        for r in record["problems"]
    ]
    headers = ["n", "POT reg", "off [s]", "on [s]", "off / on", "iterations off / on", "shift calls (their time)"]
    return out + list_table(headers, rows)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if printed_table(args, table):
        return
    th.set_num_threads(1)
    record: dict[str, Any] = {"args": vars(args), "sweep": sweep()}
    record["problems"] = table_problems(args.repeats)
    if args.out:
        from otpr_sb3.benchmark.provenance import cpu_info, git_state

        record.update(git=git_state(), torch=th.__version__, loadavg=os.getloadavg(), **cpu_info())
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
