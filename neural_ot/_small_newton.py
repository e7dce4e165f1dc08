"""Newton on the L2 dual of small dense problems, in numpy.

On a CPU problem of about 215 x 215 or fewer pairs, a Newton iteration is a few dozen operations on arrays of at most
some tens of thousands of numbers, and the per-operation overhead of torch (several microseconds each, more on a
loaded machine) was most of a solve: the benchmark's 100 x 100 problem took 2.3x POT's time. Here the same iteration
runs its elementwise work and matrix-vector products on numpy, in preallocated buffers, the matrix product of the
Schur complement of the dense Newton system in torch, and its Cholesky factor by LAPACK (below 128 rows) or torch
(on a plan with most pairs active, CG on the whole system instead: a few matrix-vector products); the
Armijo line search's accepted point is also the next iteration's. The path gives up (returns its point and
``False``) wherever the torch stage has a remedy it lacks: an isolated point (no curvature), a rejected step, a stall.
The torch stage then continues from that point: either way the stage ends at the same optimum, to the tolerance.
"""

from __future__ import annotations

import numpy as np
import torch as th
from scipy.linalg import lapack

from neural_ot._newton_system import _DELTA, _NEAR_ACTIVE

_LINE_SEARCH_STEPS = 30
_LAPACK_MAX = 128  # rows below which scipy's LAPACK Cholesky runs on one thread (OpenBLAS)
_PROGRESS_ITERS = 10  # give up when the marginal error has not halved in this many iterations
# The near-active band (_NEAR_ACTIVE) joins the curvature once a step has cut the marginal error by less than this
# factor: while Newton converges fast the exact active set is the better model (dense n = 100: 3 iterations instead of
# 4), and where it slows near a degenerate optimum the band restores progress, as in the torch stage (always on there).
_BAND_PROGRESS = 0.1
# A plan with at least this (weighted) share of pairs in the curvature, of min(n, m)^2 max(n, m) above _CG_WORK, takes
# its Newton step by Jacobi-preconditioned CG on the whole system, a few products with the 0/1 matrix, instead of the
# Schur complement's n^3 product and factorisation: dense n = 200 in 0.56x the time (docs/benchmarks.rst). Sparser
# plans keep the direct solve, which CG's inexact steps would lengthen by Newton iterations.
_CG_FRACTION = 0.8
_CG_WORK = 8e5  # about 93^3: below it the direct solve was as fast or faster (60-90 points, dense)
# Above this (about 215^3, where only dense-starting problems run here: neural_ot._newton._numpy_suits) every step is
# by CG: with the Schur complement such solves took 1.0-2.0x the torch stage's time where 22-67% of pairs end active.
_CG_ANY_WORK = 1e7
_CG_MAX_ITER = 100


class _Dual:
    """The L2 dual of one stage: ``-(a.u + b.v) + sum_ij a_i b_j (u_i + v_j - C_ij)_+^2 / (4 eps)``, minimised.

    ``C`` holds ``+inf`` on masked pairs, so their ``z`` is ``-inf`` and they carry neither mass nor curvature.
    ``Z`` and ``ZP`` are ``z`` and ``z_+`` at the last point evaluated.
    """

    def __init__(self, C: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float) -> None:
        self.C, self.a, self.b, self.eps = C, a, b, eps
        self.a_s = a / (2.0 * eps)
        self.Z, self.ZP = np.empty_like(C), np.empty_like(C)

    def at(self, u: np.ndarray, v: np.ndarray) -> float:
        """Evaluate the loss at ``(u, v)``, leaving ``z`` and ``z_+`` in the buffers."""
        np.add(u[:, None], v[None, :], out=self.Z)
        np.subtract(self.Z, self.C, out=self.Z)
        np.maximum(self.Z, 0.0, out=self.ZP)
        value = float(0.5 * (self.a_s @ (self.ZP * self.ZP) @ self.b) - self.a @ u - self.b @ v)
        return value if value == value else float("inf")

    def gradient(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Row and column mass excesses of the plan at the last point, and the larger relative L1 error."""
        g1 = self.a_s * (self.ZP @ self.b) - self.a
        g2 = self.b * (self.a_s @ self.ZP) - self.b
        return g1, g2, max(np.abs(g1).sum() / self.a.sum(), np.abs(g2).sum() / self.b.sum())


def all_active_start(
    C: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float, share: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the all-active optimum of the L2 dual if ``share`` of the pairs are active there, else ``None``.

    The closed form of :func:`neural_ot._newton._cold_start`, in numpy; a pair is active where ``u_i + v_j > C_ij``.
    """
    Cb, aC = C @ b, a @ C
    c = 0.5 * (2.0 * eps - float(a @ Cb))
    u, v = Cb + c, aC + c
    active = np.count_nonzero(np.greater(np.add.outer(u, v), C))
    return (u, v) if active >= share * C.size else None


def dense_l2_newton(
    C: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    eps: float,
    u: np.ndarray,
    v: np.ndarray,
    tol: float,
    max_iter: int,
    verbose: bool = False,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Newton iterations on the dense L2 dual from ``(u, v)``; returns the potentials, iterations and convergence.

    ``False`` means the iterations stopped early (the reasons in the module's docstring, or ``max_iter``), at a
    point whose loss is no larger than the start's.
    """
    dual = _Dual(C, a, b, eps)
    A = np.empty_like(C)
    loss = dual.at(u, v)
    best, best_it = float("inf"), 0
    band, last = 0.0, float("inf")
    for it in range(max_iter):
        g1, g2, error = dual.gradient()
        if error > _BAND_PROGRESS * last:
            band = _NEAR_ACTIVE
        last = error
        if verbose:
            print(f"eps {eps:.2e}  newton {it + 1:3d}  marginal error {error:.3e}")
        if error <= tol:
            return u, v, it, True
        if error <= 0.5 * best:
            best, best_it = error, it
        elif it - best_it >= _PROGRESS_ITERS:
            return u, v, it, False
        step = _newton_step(dual, A, g1, g2, error, band)
        if step is None:
            return u, v, it, False
        moved = _line_search(dual, u, v, step, g1, g2, loss, error)
        if moved is None:
            dual.at(u, v)  # the buffers back at the current point
            return u, v, it, False
        u, v, loss = moved
    g1, g2, error = dual.gradient()
    return u, v, max_iter, error <= tol


def _newton_step(
    dual: _Dual, A: np.ndarray, g1: np.ndarray, g2: np.ndarray, error: float, band: float = _NEAR_ACTIVE
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the Levenberg-regularised Newton step: by CG on a dense plan, else by Cholesky of a Schur complement.

    CG also takes every step above ``_CG_ANY_WORK``. The Hessian is ``[[D1, W], [W^T, D2]]`` with ``W = diag(a_s) A
    diag(b)``, ``A`` the 0/1 matrix of pairs with curvature (``z`` above ``-2 eps band``); ``None`` where a point has
    none (the torch stage repairs it by a block step) or Cholesky fails. CG stops at the torch stage's relative
    residual, ``min(0.1, sqrt(error))``.
    """
    a_s, b = dual.a_s, dual.b
    np.greater(dual.Z, -2.0 * dual.eps * band, out=A)
    Ab = A @ b
    d1, d2 = a_s * Ab, b * (a_s @ A)
    scale = max(float(d1.max()), float(d2.max()))
    if float(d1.min()) <= 1e-14 * scale or float(d2.min()) <= 1e-14 * scale:
        return None
    mean = 0.5 * (float(d1.mean()) + float(d2.mean()))
    delta = min(mean, max(1e-12 * scale, _DELTA * min(1.0, error) * mean))
    d1, d2 = d1 + delta, d2 + delta
    n, m = A.shape
    work = min(n, m) ** 2 * max(n, m)
    dense = float(dual.a @ Ab) >= _CG_FRACTION * float(dual.a.sum() * b.sum())
    if work > _CG_ANY_WORK or (work > _CG_WORK and dense):
        return _cg_step(A, a_s, b, d1, d2, -g1, -g2, min(0.1, error**0.5))
    B = np.multiply(A, a_s[:, None], out=A)  # diag(a_s) A, in A's buffer (the 0/1 matrix is not needed again)
    AE = B * (-(b * b) / d2)[None, :]  # S = D1 + AE B^T = D1 - diag(a_s) A diag(b^2 / d2) A^T diag(a_s)
    # The matrix product in torch, on the solver's torch threads: right after a POT call (L-BFGS on numpy), numpy's
    # own BLAS threads made it 9x (n = 100) to 45x (n = 150) slower beside other processes.
    S = (th.from_numpy(AE) @ th.from_numpy(B).T).numpy()
    S.flat[:: S.shape[0] + 1] += d1
    rhs = -(AE @ (g2 / b)) - g1
    x1 = _cholesky_solve(S, rhs)
    if x1 is None:
        return None
    x2 = (-g2 - b * (x1 @ B)) / d2
    return x1, x2


def _cg_step(
    A: np.ndarray, a_s: np.ndarray, b: np.ndarray, d1: np.ndarray, d2: np.ndarray, r1: np.ndarray, r2: np.ndarray, rtol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Jacobi-preconditioned CG for ``[[D1, W], [W^T, D2]] x = r``, ``W = diag(a_s) A diag(b)``, to a relative ``rtol``."""
    x1, x2 = np.zeros_like(r1), np.zeros_like(r2)
    p1, p2 = r1 / d1, r2 / d2
    rz = float(r1 @ p1 + r2 @ p2)
    stop = rtol * float(np.sqrt(r1 @ r1 + r2 @ r2))
    for _ in range(_CG_MAX_ITER):
        q1 = d1 * p1 + a_s * (A @ (b * p2))
        q2 = d2 * p2 + b * ((a_s * p1) @ A)
        curvature = float(p1 @ q1 + p2 @ q2)
        if not curvature > 0.0:  # rounding: the step so far is a descent direction
            break
        alpha = rz / curvature
        x1 += alpha * p1
        x2 += alpha * p2
        r1, r2 = r1 - alpha * q1, r2 - alpha * q2
        if float(np.sqrt(r1 @ r1 + r2 @ r2)) <= stop:
            break
        z1, z2 = r1 / d1, r2 / d2
        rz_new = float(r1 @ z1 + r2 @ z2)
        p1, p2 = z1 + (rz_new / rz) * p1, z2 + (rz_new / rz) * p2
        rz = rz_new
    return x1, x2


def _cholesky_solve(S: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """Solve ``S x = rhs`` for a symmetric ``S`` (overwritten) by Cholesky; ``None`` if it is not positive definite.

    Below ``_LAPACK_MAX`` rows, LAPACK through scipy is called directly (32 against 120 microseconds through torch at
    n = 100, 2026-12-06); OpenBLAS's factorisation stays on one thread there, while from 128 rows it wakes threads
    that then spin against the solver's own (4-40x slower beside other processes).
    """
    if S.shape[0] < _LAPACK_MAX:
        factor, info = lapack.dpotrf(S.T, lower=1, clean=0, overwrite_a=1)  # S.T: the same matrix, Fortran order
        if info != 0:
            return None
        x, info = lapack.dpotrs(factor, rhs, lower=1)
        return x if info == 0 else None
    factor_t, info_t = th.linalg.cholesky_ex(th.from_numpy(S))
    if int(info_t) != 0:
        return None
    return th.cholesky_solve(th.from_numpy(rhs)[:, None], factor_t).squeeze(1).numpy()


def _line_search(
    dual: _Dual,
    u: np.ndarray,
    v: np.ndarray,
    step: tuple[np.ndarray, np.ndarray],
    g1: np.ndarray,
    g2: np.ndarray,
    loss: float,
    error: float,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Backtracking along ``step``: Armijo on the dual, or the marginal error where the dual cannot resolve it.

    Returns the new point and its loss, with the buffers there; ``None`` if no step length is accepted.
    """
    x1, x2 = step
    slope = float(g1 @ x1 + g2 @ x2)
    on_error = abs(slope) < 1e-13 * max(1.0, abs(loss))  # below the objective's float64 resolution
    t = 1.0
    for _ in range(_LINE_SEARCH_STEPS):
        un, vn = u + t * x1, v + t * x2
        cand = dual.at(un, vn)
        if (dual.gradient()[2] < error) if on_error else (cand <= loss + 1e-4 * t * slope):
            return un, vn, cand
        t *= 0.5
    return None
