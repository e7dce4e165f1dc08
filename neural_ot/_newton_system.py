"""The linear algebra of a Newton step on the regularised dual.

The curvature of the plan, the Hessian as an operator, and preconditioned conjugate gradients on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch as th

from neural_ot._dual_problem import _Problem, _SparseProblem, above, flat_nonzero, indicator, pair_sums, true_pairs
from neural_ot.duals import relative_marginal_errors
from neural_ot.regularizers import SquaredL2

_DENSE_FRACTION = 0.2  # above this fraction of active pairs, dense products beat index scatter
# L2: pairs with a density above -_NEAR_ACTIVE (z > -2 eps _NEAR_ACTIVE) carry curvature, the active ones and those
# just below the kink. Near a degenerate optimum (many pairs at z = 0, as at small eps) the curvature of the active
# pairs alone flips them in and out at every step and Newton stalls (POT reg 0.01: n = 600 at 1.9e-9, n = 1000 at
# continuation ratio 100 at 2.5e-8); with the pairs just below the kink, an element of the generalised Jacobian there,
# both converge (tests/test_discrete.py).
_NEAR_ACTIVE = 1e-3
_DELTA = 1e-2  # Levenberg term of a Newton system: relative to its mean diagonal, times the marginal error
_SYMMETRIC_LU = True  # sparse direct solves by SuperLU in symmetric mode; False: spsolve's general LU (COLAMD, pivoting)


class _Curvature:
    """Marginals of the plan and Hessian weights ``W`` at one point, sparse for L2, dense otherwise.

    ``active`` is the boolean curvature support of a sparse L2 curvature (``None`` when ``dense``).
    """

    def __init__(self, prob: _Problem | _SparseProblem, z: th.Tensor, reuse: bool = False) -> None:
        n, m = prob.shape
        self.n, self.m = n, m
        a, b = prob.a, prob.b
        self.active: th.Tensor | None = None
        self._W: th.Tensor | None = None
        # Dense L2: W = diag(a / (2 eps)) A diag(b) with A the 0/1 active matrix, kept as these three factors.
        self._factors: tuple[th.Tensor, th.Tensor, th.Tensor] | None = None
        if isinstance(prob, _SparseProblem):
            active = z > -2.0 * prob.r.reg * _NEAR_ACTIVE
            self.active = active
            idx = flat_nonzero(active)  # one pass: a boolean index per array would repeat it four times
            self.rows, self.cols = prob.rows.index_select(0, idx), prob.cols.index_select(0, idx)
            self._from_active(prob, z.index_select(0, idx), prob.ab.index_select(0, idx))
            self.dense = False
        elif isinstance(prob.r, SquaredL2):
            # The 0/1 matrix of the curvature support (the masses use z > 0, z+) is written by one comparison into a
            # float buffer and counted by its sum: a boolean, its count_nonzero and a copy took 3x longer (n = 500).
            # `reuse`: the Newton iteration's own curvature, in the problem's buffers (dead at the next iteration).
            # A coarse stage's products with A run in float32 (half the memory traffic; CG there stops at rtol 0.1,
            # far above float32's floor); the masses, from z, keep z's dtype (float32 where the whole stage does).
            # `indicator` writes the comparison straight into the buffer, of either dtype (no temporaries).
            low = th.float32 if prob.coarse and z.dtype == th.float64 else z.dtype
            thr = -2.0 * prob.r.reg * _NEAR_ACTIVE
            if not reuse:
                A = indicator(z, thr, th.empty_like(z, dtype=low))
            else:
                A = indicator(z, thr, prob.scratch("A32", low) if low != z.dtype else prob.scratch("A"))
            if prob.mask is not None:
                A.mul_(prob.mask)
            self.dense = float(A.sum()) > _DENSE_FRACTION * n * m
            if self.dense:  # dense products: no index lists (their scatter costs more than the zeros it skips)
                # L2: curvature a_i b_j / (2 eps) on active pairs and plan z a_i b_j / (2 eps) there, so the masses
                # and Hessian diagonals are matrix-vector products with A and z+ (no W, no plan).
                a_s = a / (2.0 * prob.r.reg)
                self._factors = (A, a_s, b)
                zp = th.clamp(z, min=0.0, out=prob.scratch("tmp"))  # a diverged -inf z gives 0, not 0 * -inf
                zp = zp if prob.mask is None else zp.mul_(prob.mask)
                self.row_mass, self.col_mass = a_s * (zp @ b), b * (a_s @ zp)
                self.d1, self.d2 = a_s * (A @ b.to(low)).to(z.dtype), b * (a_s.to(low) @ A).to(z.dtype)
            else:
                self.active = above(A)
                flat, self.rows, self.cols = true_pairs(self.active)
                zc = z.view(-1).index_select(0, flat)
                self._from_active(prob, zc, a.index_select(0, self.rows).mul_(b.index_select(0, self.cols)))
        else:
            T = prob.masked(prob.r.density(z)).mul_(a[:, None]).mul_(b[None, :])
            self.row_mass, self.col_mass = T.sum(1), T.sum(0)
            self._plan, self._reg = T, prob.r.reg  # entropic: curvature = density / eps, built when a step needs it
            self.d1, self.d2 = self.row_mass / prob.r.reg, self.col_mass / prob.r.reg
            self.dense = True
        self.direct = not self.dense and self.w.numel() <= 4 * (n + m)

    @property
    def W(self) -> th.Tensor:
        """Dense Hessian weights ``(n, m)`` (dense case), built at the first use."""
        if self._W is None:
            if self._factors is None:
                self._W = self._plan / self._reg
            else:
                A, a_s, b = self._factors
                self._W = (a_s[:, None] * A).mul_(b[None, :])
        return self._W

    def w_products(self, xu: th.Tensor, xv: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(W xv, W^T xu)`` in the dense case, without building ``W`` for L2."""
        if self._W is None and self._factors is not None:
            A, a_s, b = self._factors
            low = A.dtype
            return a_s * (A @ (b * xv).to(low)).to(xv.dtype), b * ((a_s * xu).to(low) @ A).to(xu.dtype)
        return self.W @ xv, self.W.T @ xu

    def marginal_error(self, prob: _Problem | _SparseProblem) -> tuple[float, float]:
        """Relative L1 errors of the row and column marginals."""
        return relative_marginal_errors(self.row_mass, self.col_mass, prob.a, prob.b)

    def _from_active(self, prob: _Problem | _SparseProblem, zc: th.Tensor, ab: th.Tensor) -> None:
        # L2 (the only sparse case): curvature 1 / (2 eps) on the whole support, near-active pairs included
        self.w = ab / (2.0 * prob.r.reg)
        t = zc.clamp_(min=0.0).mul_(self.w)  # the plan on the support; `zc` is the caller's gathered copy
        self.row_mass, self.col_mass = pair_sums(t, self.rows, self.cols, self.n, self.m)
        self.d1, self.d2 = pair_sums(self.w, self.rows, self.cols, self.n, self.m)


class _HessianOperator:
    """Matrix-free product with the regularised Newton matrix, restricted to non-isolated nodes."""

    def __init__(self, curv: _Curvature, delta: float, free_u: th.Tensor, free_v: th.Tensor):
        self.c = curv
        self.n, self.m = curv.n, curv.m
        self.delta = delta
        self.free = th.cat([free_u, free_v]).to(curv.d1.dtype)
        self._csr: sp.csr_matrix | None = None

    @property
    def csr(self) -> sp.csr_matrix | None:
        """The sparse curvature as CSR (CPU, sparse case), built at the first product: direct solves never need it."""
        c = self.c
        if self._csr is None and not c.dense and c.w.device.type == "cpu":
            # Pairs come row-major from nonzero(), so the CSR row pointer is a cumulative count (no sort).
            indptr = np.concatenate([[0], np.cumsum(np.bincount(c.rows.numpy(), minlength=self.n))])
            self._csr = sp.csr_matrix((c.w.numpy(), c.cols.numpy(), indptr), shape=(self.n, self.m))
        return self._csr

    @property
    def diagonal(self) -> th.Tensor:
        return th.cat([self.c.d1, self.c.d2]) + self.delta

    def __call__(self, x: th.Tensor) -> th.Tensor:
        c = self.c
        x = x * self.free
        xu, xv = x[: self.n], x[self.n :]
        if c.dense:
            ou, ov = c.w_products(xu, xv)
        elif (csr := self.csr) is not None:
            ou = th.from_numpy(csr @ xv.numpy())
            ov = th.from_numpy(csr.T @ xu.numpy())
        else:
            ou = th.zeros_like(xu).index_add_(0, c.rows, c.w * xv[c.cols])
            ov = th.zeros_like(xv).index_add_(0, c.cols, c.w * xu[c.rows])
        out = th.cat([c.d1 * xu + ou, c.d2 * xv + ov]) + self.delta * x
        return out * self.free

    def solve_dense(self, rhs: th.Tensor) -> th.Tensor:
        """Direct dense solve of the Newton system on the free nodes, for small problems.

        The system is ``[[D1, W], [W^T, D2]]`` with diagonal ``D1``, ``D2``: the larger side is eliminated and the
        Schur complement of the smaller one is solved by Cholesky (``min(n, m)^3 / 3`` flops instead of
        ``(n + m)^3 / 3``; no ``(n + m)^2`` matrix is built).
        """
        c, n = self.c, self.n
        W = c.W if c.dense else th.zeros(n, self.m, dtype=rhs.dtype, device=rhs.device).index_put_((c.rows, c.cols), c.w)
        free = self.free > 0
        d = self.diagonal
        fu: th.Tensor | slice
        fv: th.Tensor | slice
        if bool(free.all()):  # the usual case: no copies of W
            fu = fv = slice(None)
            Wf = W
        else:
            fu, fv = free[:n], free[n:]
            Wf = W[fu][:, fv]
        d1, d2, ru, rv = d[:n][fu], d[n:][fv], rhs[:n][fu], rhs[n:][fv]
        if Wf.shape[0] < Wf.shape[1]:  # eliminate the larger side: v
            xu, xv = self._schur(Wf, d1, d2, ru, rv)
        else:
            xv, xu = self._schur(Wf.T, d2, d1, rv, ru)
        x = th.zeros_like(rhs)
        x[:n][fu], x[n:][fv] = xu, xv
        return x

    @staticmethod
    def _schur(W: th.Tensor, d1: th.Tensor, d2: th.Tensor, r1: th.Tensor, r2: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Solve ``[[D1, W], [W^T, D2]] [x1; x2] = [r1; r2]`` (``W`` is ``k x l``, k <= l) by eliminating ``x2``."""
        Wd = W / d2[None, :]  # D2^{-1} eliminated: S = D1 - W D2^{-1} W^T, of the smaller side
        S = (Wd @ W.T).neg_()
        S.diagonal().add_(d1)
        rhs = r1 - Wd @ r2
        L, info = th.linalg.cholesky_ex(S)
        x1 = th.cholesky_solve(rhs[:, None], L).squeeze(1) if int(info) == 0 else th.linalg.solve(S, rhs)
        x2 = (r2 - W.T @ x1) / d2
        return x1, x2

    def solve_sparse(self, rhs: th.Tensor) -> th.Tensor:
        """Direct sparse solve (SuperLU on the CPU); the active graph is nearly a forest for small eps."""
        n, m = self.n, self.m
        free = self.free.cpu().numpy() > 0
        rows = self.c.rows.cpu().numpy()
        cols = self.c.cols.cpu().numpy() + n
        w = self.c.w.cpu().numpy()
        diag = np.where(free, self.diagonal.cpu().numpy(), 1.0)
        keep = free[rows] & free[cols]
        idx = np.arange(n + m)
        A = sp.csc_matrix(
            (
                np.concatenate([diag, w[keep], w[keep]]),
                (np.concatenate([idx, rows[keep], cols[keep]]), np.concatenate([idx, cols[keep], rows[keep]])),
            ),
            shape=(n + m, n + m),
        )
        b = np.where(free, rhs.cpu().numpy(), 0.0)
        x = None
        if _SYMMETRIC_LU:
            # The matrix is symmetric positive definite: a symmetric fill-reducing order (minimum degree on A + A^T)
            # and no pivoting, instead of spsolve's general LU (examples/benchmarks/bench_sparse_direct.py).
            try:
                x = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}).solve(b)
            except RuntimeError:  # an exactly zero pivot, which rounding could give: the general LU pivots past it
                x = None
        if x is None:
            x = spla.spsolve(A, b)
        return th.from_numpy(np.asarray(x)).to(rhs)


def _pcg(op: Callable[[th.Tensor], th.Tensor], rhs: th.Tensor, diag: th.Tensor, rtol: float, max_iter: int) -> th.Tensor:
    """Jacobi-preconditioned conjugate gradients for the SPD system ``op(x) = rhs``.

    Kept rather than ``scipy.sparse.linalg.cg``: it runs on any torch device, and on the CPU it was measured
    faster than scipy's on the Newton systems of ``examples/benchmarks/bench_newton_cg.py`` (no conversion
    between torch and numpy at each product).
    """
    x = th.zeros_like(rhs)
    r = rhs.clone()
    stop = rtol * float(rhs.norm())
    zr = r / diag
    d = zr.clone()
    rz = float(r @ zr)
    for _ in range(max_iter):
        Ad = op(d)
        dAd = float(d @ Ad)
        if dAd <= 0:
            break
        alpha = rz / dAd
        x += alpha * d
        r -= alpha * Ad
        if float(r.norm()) <= stop:
            break
        zr = r / diag
        rz_new = float(r @ zr)
        d = zr + (rz_new / rz) * d
        rz = rz_new
    return x
