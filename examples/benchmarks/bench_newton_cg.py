"""Conjugate gradients on the exact L2 solver's Newton systems: scipy's ``cg`` against the torch loop ``_pcg``.

Both run side by side in one process on the same systems (Jacobi preconditioner, same ``rtol``), taken
from a few Newton iterations into problems with n = m = 1,000 and 2,000 points. Prints a table of times and
the ratio scipy / torch (below 1: scipy faster). ``neural_ot`` keeps its own loop because of it::

    python examples/benchmarks/bench_newton_cg.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse.linalg as spla
import torch as th

import neural_ot as no
from neural_ot._dual_problem import _Problem
from neural_ot._newton import _Curvature, _HessianOperator, _pcg


def _scipy_cg(op, rhs: th.Tensor, diag: th.Tensor, rtol: float, max_iter: int) -> th.Tensor:
    """The same system through ``scipy.sparse.linalg.cg`` with the same Jacobi preconditioner."""
    size, inv_diag = rhs.shape[0], (1.0 / diag).numpy()
    A = spla.LinearOperator((size, size), matvec=lambda z: op(th.from_numpy(np.ascontiguousarray(z).reshape(-1))).numpy())
    M = spla.LinearOperator((size, size), matvec=lambda z: z.reshape(-1) * inv_diag)
    x, _ = spla.cg(A, rhs.numpy(), rtol=rtol, atol=0.0, maxiter=max_iter, M=M)
    return th.from_numpy(x)


def _best_of(solve, op, rhs, rtol: float, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solve(op, rhs, op.diagonal, rtol, 1000)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    th.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| n = m | reg | rtol | torch _pcg (ms) | scipy cg (ms) | scipy / torch |")
    print("|---|---|---|---|---|---|")
    for n, reg in ((1000, 1e-2), (1000, 1e-1), (2000, 1e-2)):
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1
        C = th.tensor(((x[:, None] - y[None]) ** 2).sum(-1))
        C /= C.max()
        a = b = th.full((n,), 1.0 / n, dtype=th.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = no.solve_discrete(a, b, C, reg, tol=1e-3, max_iter=3)  # a point in the middle of a solve
        u, v = th.as_tensor(res.u), th.as_tensor(res.v)
        prob = _Problem(a, b, C, None, no.get_regularizer(reg, "l2"))
        curv = _Curvature(prob, prob.z(u, v))
        delta = 1e-3 * float(th.cat([curv.d1, curv.d2]).mean())
        op = _HessianOperator(curv, delta, th.ones(n, dtype=th.bool), th.ones(n, dtype=th.bool))
        rhs = th.cat([a - curv.row_mass, b - curv.col_mass])
        for rtol in (1e-2, 1e-4):
            t_torch = _best_of(_pcg, op, rhs, rtol)
            t_scipy = _best_of(_scipy_cg, op, rhs, rtol)
            print(f"| {n} | {reg:g} | {rtol:g} | {t_torch * 1e3:.1f} | {t_scipy * 1e3:.1f} | {t_scipy / t_torch:.2f} |")


if __name__ == "__main__":
    main()
