"""Where the time of the exact solver goes: cProfile of ``neural_ot.solve_discrete`` on the benchmark's problem.

Run: ``python examples/benchmarks/profile_newton.py [--n 1000] [--reg 0.01] [--reg-type l2]``. The problem is the
one of ``bench_neural_ot.py`` (squared Euclidean between Gaussian clouds, max 1; for L2, ``reg`` is POT's and
``eps = reg / (2 n m)``). Prints the solve time, the Newton iterations and a markdown table of the functions
with the most own time, per solve and per Newton iteration.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy as np
import torch as th

import neural_ot as no

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neural_ot import _problem  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--reg", type=float, default=0.01)
    parser.add_argument("--reg-type", choices=["l2", "entropic"], default="l2")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    th.set_num_threads(2)
    M = _problem(args.n)
    a = b = np.full(args.n, 1.0 / args.n)
    eps = args.reg / (2 * args.n**2) if args.reg_type == "l2" else args.reg
    no.solve_discrete(a, b, M, eps, reg_type=args.reg_type)  # warm-up
    t0 = time.perf_counter()
    res = no.solve_discrete(a, b, M, eps, reg_type=args.reg_type)
    elapsed = time.perf_counter() - t0
    profiler = cProfile.Profile()
    profiler.enable()
    no.solve_discrete(a, b, M, eps, reg_type=args.reg_type)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    iters = max(res.n_iter, 1)
    print(
        f"n = m = {args.n}, {args.reg_type}, eps {eps:.3g}: {elapsed:.3f} s, {res.n_iter} Newton iterations, "
        f"{res.n_sinkhorn} Sinkhorn sweeps, marginal error {res.marginal_error:.1e}\n"
    )
    print("| function | calls | ms per solve (cProfile) | ms per Newton iteration | share |\n|---|---|---|---|---|")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[: args.rows]  # type: ignore[attr-defined]
    for (filename, line, func), (_, ncalls, tottime, _, _) in rows:
        where = func if filename.startswith("~") else f"{func} ({os.path.basename(filename)}:{line})"
        print(f"| {where} | {ncalls} | {tottime * 1e3:.1f} | {tottime * 1e3 / iters:.2f} | {tottime / total:.0%} |")


if __name__ == "__main__":
    main()
