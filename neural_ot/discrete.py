r"""Exact solver of regularised discrete OT: a regularised semismooth Newton method on the dual.

The dual of the density-regularised problem (see :mod:`neural_ot.regularizers`) is concave with a
Hessian of graph-Laplacian form,

.. math:: -\nabla^2 D = \begin{pmatrix} \mathrm{diag}(W 1) & W \\ W^\top & \mathrm{diag}(W^\top 1)\end{pmatrix},
   \qquad W_{ij} = a_i b_j m_{ij} (\phi^*)''(u_i + v_j - C_{ij}),

which is sparse for L2 regularisation (only active pairs) and dense for the entropic one. Each
iteration solves the Levenberg-regularised Newton system by preconditioned conjugate gradients with
a matrix-free product on the active set, followed by an Armijo line search; isolated points (no
active pair) are repaired by exact block maximisation. See Lorenz, Manns and Meyer (2021),
"Quadratically regularized optimal transport", for the L2 case.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch as th

from neural_ot._arrays import ArrayLike, is_numpy, result_dtype, to_output, to_tensor
from neural_ot._validation import (
    check_equal_mass,
    check_mask,
    check_masked_feasibility,
    check_matrix,
    check_positive_int,
    check_weights,
)
from neural_ot.regularizers import Entropic, Regularizer, SquaredL2, get_regularizer
from neural_ot.results import OTResult

_DENSE_FRACTION = 0.2  # above this fraction of active pairs, dense products beat index scatter
_DELTA = 1e-2  # Levenberg term relative to the mean diagonal, times the marginal error
_CONTINUATION = 30.0  # ratio between successive eps of the continuation
_WORKING_SET_K = 8  # candidates per row and per column kept in the L2 working set
_WORKING_SET_FRACTION = 0.05  # above this fraction of active pairs, the full matrix is used directly
_WORKING_SET_ROUNDS = 50
_SINKHORN_SWEEPS = 1000  # at most this many Sinkhorn iterations before Newton (entropic problems)
_DENSE_SOLVE_MAX = 600  # up to this many unknowns (n + m), Newton systems are solved by dense Cholesky
_WORKING_SET_MIN_PAIRS = 250_000  # below this many pairs the full matrix is cheaper than a working set


class _Problem:
    """Float64 data of one discrete problem, with the dual objective and its derivatives."""

    def __init__(self, a: th.Tensor, b: th.Tensor, C: th.Tensor, mask: th.Tensor | None, regularizer: Regularizer):
        self.a, self.b, self.C, self.mask, self.r = a, b, C, mask, regularizer
        self.shape = C.shape
        self.sinkhorn_sweeps = 0  # counted for the result

    def z(self, u: th.Tensor, v: th.Tensor) -> th.Tensor:
        return u[:, None] + v[None, :] - self.C

    def masked(self, X: th.Tensor) -> th.Tensor:
        return X if self.mask is None else X * self.mask

    def loss(self, u: th.Tensor, v: th.Tensor) -> float:
        """Negative dual objective (minimised); ``inf`` on overflow."""
        pen = self.masked(self.r.conjugate(self.z(u, v)))
        value = float(self.a @ pen @ self.b - self.a @ u - self.b @ v)
        return value if value == value else float("inf")

    def line_loss(
        self, u: th.Tensor, v: th.Tensor, du: th.Tensor, dv: th.Tensor, z: th.Tensor, active: th.Tensor | None
    ) -> Callable[[float], float]:
        """Loss along ``(u, v) + t (du, dv)`` for ``t`` in ``[0, 1]``, with ``z`` the current ``u + v - C``.

        The L2 penalty vanishes where ``z + t s <= 0`` for every such ``t``, so only the pairs active now
        (``active``, a boolean matrix) or at ``t = 1`` are kept: one dense pass per line search.
        """
        if not isinstance(self.r, SquaredL2) or active is None:
            return lambda t: self.loss(u + t * du, v + t * dv)
        keep = th.add(z, du[:, None]).add_(dv[None, :]) > 0
        keep |= active
        if self.mask is not None:
            keep &= self.mask > 0
        rows, cols = th.nonzero(keep, as_tuple=True)
        zc, sc = z[rows, cols], du[rows] + dv[cols]
        wc = self.a[rows] * self.b[cols]
        lin0, lin1 = float(self.a @ u + self.b @ v), float(self.a @ du + self.b @ dv)

        def f(t: float) -> float:
            return float(wc @ self.r.conjugate(zc + t * sc)) - lin0 - t * lin1

        return f

    def plan(self, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        H = self.masked(self.r.density(self.z(u, v)))
        return H, self.a[:, None] * H * self.b[None, :]

    def errors(self, T: th.Tensor) -> tuple[float, float]:
        ea = float((T.sum(1) - self.a).abs().sum() / self.a.sum())
        eb = float((T.sum(0) - self.b).abs().sum() / self.b.sum())
        return ea, eb

    def block_maximize(self, u: th.Tensor, v: th.Tensor, rows: th.Tensor | None = None, side: str = "u") -> th.Tensor:
        """Exact maximisation of the dual over ``u`` (or ``v``) on the selected rows, the other fixed."""
        if side == "u":
            C, other, w, mask = self.C, v, self.b, self.mask
            current = u
        else:
            C, other, w = self.C.T, u, self.a
            mask = None if self.mask is None else self.mask.T
            current = v
        sel = th.arange(C.shape[0], device=C.device) if rows is None else rows
        if sel.numel() == 0:
            return current
        Cs = C[sel] - other[None, :]  # c_ij - v_j: the row's thresholds
        ms = None if mask is None else mask[sel] > 0
        if isinstance(self.r, Entropic):
            logits = -Cs / self.r.reg + th.log(w)[None, :]
            if ms is not None:
                logits = logits.masked_fill(~ms, -float("inf"))
            new = -self.r.reg * th.logsumexp(logits, dim=1)
        else:
            new = _l2_block_solution(Cs, w, ms, 2.0 * self.r.reg)
        out = current.clone()
        out[sel] = new
        return out


class _SparseProblem:
    """The L2 problem restricted to a working set of pairs (``rows``, ``cols``); O(|set|) per evaluation.

    Used for small eps, where few pairs are active: Newton iterations run on the working set, and the
    driver checks on the full matrix that no pair outside it has become active.
    """

    def __init__(self, full: _Problem, rows: th.Tensor, cols: th.Tensor) -> None:
        self.full, self.a, self.b, self.r = full, full.a, full.b, full.r
        self.rows, self.cols = rows, cols
        self.c = full.C[rows, cols]
        self.ab = self.a[rows] * self.b[cols]
        self.shape = full.C.shape

    def z(self, u: th.Tensor, v: th.Tensor) -> th.Tensor:
        return u[self.rows] + v[self.cols] - self.c

    def loss(self, u: th.Tensor, v: th.Tensor) -> float:
        value = float(self.ab @ self.r.conjugate(self.z(u, v)) - self.a @ u - self.b @ v)
        return value if value == value else float("inf")

    def line_loss(
        self, u: th.Tensor, v: th.Tensor, du: th.Tensor, dv: th.Tensor, z: th.Tensor, active: th.Tensor | None
    ) -> Callable[[float], float]:
        s = du[self.rows] + dv[self.cols]
        lin0, lin1 = float(self.a @ u + self.b @ v), float(self.a @ du + self.b @ dv)

        def f(t: float) -> float:
            return float(self.ab @ self.r.conjugate(z + t * s)) - lin0 - t * lin1

        return f

    def block_maximize(self, u: th.Tensor, v: th.Tensor, rows: th.Tensor | None = None, side: str = "u") -> th.Tensor:
        """Exact block maximisation over the working set, for the selected rows (or columns)."""
        n, m = self.shape
        own, other_idx, size, other_size = (self.rows, self.cols, n, m) if side == "u" else (self.cols, self.rows, m, n)
        current, other, w = (u, v, self.b) if side == "u" else (v, u, self.a)
        sel = th.arange(size, device=u.device) if rows is None else rows
        if sel.numel() == 0:
            return current
        local = th.full((size,), -1, dtype=th.long, device=u.device)
        local[sel] = th.arange(sel.numel(), device=u.device)
        pick = local[own] >= 0
        thresholds = th.full((sel.numel(), other_size), float("inf"), dtype=u.dtype, device=u.device)
        thresholds[local[own[pick]], other_idx[pick]] = self.c[pick] - other[other_idx[pick]]
        out = current.clone()
        out[sel] = _l2_block_solution(thresholds, w, None, 2.0 * self.r.reg)
        return out


def _l2_block_solution(thresholds: th.Tensor, w: th.Tensor, active: th.Tensor | None, target: float) -> th.Tensor:
    """Solve ``sum_j w_j (s - t_j)_+ = target`` for ``s`` on each row, by sorting the thresholds ``t``.

    Only the smallest thresholds matter when few pairs are active, so a partial sort (``topk``) is
    tried first and rows whose solution lies beyond it fall back to a full sort.
    """
    inf = th.tensor(float("inf"), dtype=thresholds.dtype, device=thresholds.device)
    t = thresholds if active is None else th.where(active, thresholds, inf)
    wt = w[None, :].expand_as(t)
    k = min(t.shape[1], 64)
    if k < t.shape[1]:
        ts, order = th.topk(t, k + 1, dim=1, largest=False, sorted=True)
        sol, ok = _breakpoint_solution(ts[:, :k], th.gather(wt, 1, order[:, :k]), ts[:, k], target)
        if bool(ok.all()):
            return sol
        rest = th.nonzero(~ok).flatten()
        ts, order = th.sort(t[rest], dim=1)
        sol[rest] = _breakpoint_solution(ts, th.gather(wt[rest], 1, order), None, target)[0]
        return sol
    ts, order = th.sort(t, dim=1)
    return _breakpoint_solution(ts, th.gather(wt, 1, order), None, target)[0]


def _breakpoint_solution(ts: th.Tensor, ws: th.Tensor, next_t: th.Tensor | None, target: float) -> tuple[th.Tensor, th.Tensor]:
    """Root of the increasing piecewise-linear ``s -> sum_j w_j (s - t_j)_+ - target`` on sorted ``ts``."""
    finite = th.isfinite(ts)
    ws = th.where(finite, ws, th.zeros_like(ws))
    tw = th.where(finite, ts * ws, th.zeros_like(ts))
    cw, ctw = ws.cumsum(1), tw.cumsum(1)
    cand = (target + ctw) / cw.clamp_min(th.finfo(ts.dtype).tiny)
    tail = th.full_like(ts[:, :1], float("inf")) if next_t is None else next_t[:, None]
    upper = th.cat([ts[:, 1:], tail], dim=1)
    valid = (cw > 0) & (cand >= ts) & (cand <= upper)
    k = th.argmax(valid.to(th.int8), dim=1)  # first valid breakpoint (the function is increasing)
    return th.gather(cand, 1, k[:, None]).squeeze(1), valid.any(1)


class _Curvature:
    """Marginals of the plan and Hessian weights ``W`` at one point, sparse for L2, dense otherwise."""

    def __init__(self, prob: _Problem | _SparseProblem, z: th.Tensor) -> None:
        n, m = prob.shape
        self.n, self.m = n, m
        a, b = prob.a, prob.b
        self.active: th.Tensor | None = None
        if isinstance(prob, _SparseProblem):
            active = z > 0
            self.active = active
            self.rows, self.cols = prob.rows[active], prob.cols[active]
            zc, ab = z[active], prob.ab[active]
            self._from_active(prob, zc, ab)
            self.dense = False
        elif isinstance(prob.r, SquaredL2):
            active = z > 0
            if prob.mask is not None:
                active &= prob.mask > 0
            self.active = active
            self.rows, self.cols = th.nonzero(active, as_tuple=True)
            zc = z[self.rows, self.cols]
            self._from_active(prob, zc, a[self.rows] * b[self.cols])
            self.dense = self.w.numel() > _DENSE_FRACTION * n * m
            if self.dense:
                self.W = th.zeros_like(z).index_put_((self.rows, self.cols), self.w)
        else:
            H = prob.masked(prob.r.density(z))
            T = a[:, None] * H * b[None, :]
            self.row_mass, self.col_mass = T.sum(1), T.sum(0)
            self.W = T / prob.r.reg  # entropic: curvature = density / eps
            self.d1, self.d2 = self.row_mass / prob.r.reg, self.col_mass / prob.r.reg
            self.dense = True
        self.direct = not self.dense and self.w.numel() <= 4 * (n + m)

    def marginal_error(self, prob: _Problem | _SparseProblem) -> tuple[float, float]:
        """Relative L1 errors of the row and column marginals."""
        ea = float((self.row_mass - prob.a).abs().sum() / prob.a.sum())
        eb = float((self.col_mass - prob.b).abs().sum() / prob.b.sum())
        return ea, eb

    def _from_active(self, prob: _Problem | _SparseProblem, zc: th.Tensor, ab: th.Tensor) -> None:
        self.w = ab * prob.r.curvature(zc)
        t = ab * prob.r.density(zc)
        self.row_mass = th.zeros_like(prob.a).index_add_(0, self.rows, t)
        self.col_mass = th.zeros_like(prob.b).index_add_(0, self.cols, t)
        self.d1 = th.zeros_like(prob.a).index_add_(0, self.rows, self.w)
        self.d2 = th.zeros_like(prob.b).index_add_(0, self.cols, self.w)


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
            ou, ov = c.W @ xv, c.W.T @ xu
        elif (csr := self.csr) is not None:
            ou = th.from_numpy(csr @ xv.numpy())
            ov = th.from_numpy(csr.T @ xu.numpy())
        else:
            ou = th.zeros_like(xu).index_add_(0, c.rows, c.w * xv[c.cols])
            ov = th.zeros_like(xv).index_add_(0, c.cols, c.w * xu[c.rows])
        out = th.cat([c.d1 * xu + ou, c.d2 * xv + ov]) + self.delta * x
        return out * self.free

    def solve_dense(self, rhs: th.Tensor) -> th.Tensor:
        """Direct dense solve (Cholesky) of the Newton system on the free nodes, for small problems."""
        c, n = self.c, self.n
        W = c.W if c.dense else th.zeros(n, self.m, dtype=rhs.dtype, device=rhs.device).index_put_((c.rows, c.cols), c.w)
        A = th.diag(self.diagonal)
        A[:n, n:] = W
        A[n:, :n] = W.T
        free = self.free > 0
        x = th.zeros_like(rhs)
        A_free = A[free][:, free]
        L, info = th.linalg.cholesky_ex(A_free)
        x[free] = th.cholesky_solve(rhs[free][:, None], L).squeeze(1) if int(info) == 0 else th.linalg.solve(A_free, rhs[free])
        return x

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
        x = spla.spsolve(A, np.where(free, rhs.cpu().numpy(), 0.0))
        return th.from_numpy(np.asarray(x)).to(rhs)


def _pcg(op: Callable[[th.Tensor], th.Tensor], rhs: th.Tensor, diag: th.Tensor, rtol: float, max_iter: int) -> th.Tensor:
    """Jacobi-preconditioned conjugate gradients for the SPD system ``op(x) = rhs``."""
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


def _newton(
    prob: _Problem, tol: float, max_iter: int, cg_max_iter: int, verbose: bool
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """Maximise the dual with eps-continuation; returns ``(u, v, iterations, converged)``.

    Small eps makes the dual nearly piecewise linear, where Newton's method is slow from a cold start.
    Solving a sequence of problems with eps decreasing by ``_CONTINUATION``, from the scale of the
    costs' spread, warm-starts each stage close to its solution.
    """
    n, m = prob.shape
    u = th.zeros(n, dtype=prob.C.dtype, device=prob.C.device)
    v = th.zeros(m, dtype=prob.C.dtype, device=prob.C.device)
    target = prob.r
    spread = float(prob.C.max() - prob.C.min())
    schedule = [target.reg]
    while spread > 0 and schedule[-1] * _CONTINUATION < 1e-2 * spread:
        schedule.append(schedule[-1] * _CONTINUATION)
    total = 0
    converged = False
    for k, reg in enumerate(reversed(schedule)):
        last = k == len(schedule) - 1
        prob.r = target if last else type(target)(reg)
        small = n * m < _WORKING_SET_MIN_PAIRS
        stage = _working_set_stage if isinstance(prob.r, SquaredL2) and not small else _newton_stage
        u, v, it, converged = stage(prob, u, v, tol if last else max(tol, 1e-4), max_iter - total, cg_max_iter, verbose)
        total += it
        if total >= max_iter:
            break
    prob.r = target
    return u, v, total, converged and prob.r is target


def _sinkhorn_sweeps(prob: _Problem, u: th.Tensor, v: th.Tensor, tol: float) -> tuple[th.Tensor, th.Tensor]:
    """Sinkhorn iterations in the scaling domain around ``(u, v)`` (a stabilised kernel), while they converge fast.

    The kernel ``exp((u + v - C) / eps)`` is bounded after the exact block steps, so scalings stay finite;
    Newton takes over when Sinkhorn slows down (small eps), which is where it is slow.
    """
    eps = prob.r.reg
    K = prob.masked(th.exp(prob.z(u, v) / eps))
    alpha, beta = th.ones_like(u), th.ones_like(v)
    last_err = float("inf")
    for it in range(1, _SINKHORN_SWEEPS + 1):
        alpha_new = 1.0 / (K @ (beta * prob.b))
        beta_new = 1.0 / (K.T @ (alpha_new * prob.a))
        if not (bool(th.isfinite(alpha_new).all()) and bool(th.isfinite(beta_new).all())):
            break
        alpha, beta = alpha_new, beta_new
        prob.sinkhorn_sweeps += 1
        if it % 10 == 0:
            err = float((prob.a * alpha * (K @ (beta * prob.b)) - prob.a).abs().sum() / prob.a.sum())
            if err <= tol or err > 0.9 * last_err:
                break
            last_err = err
    return u + eps * th.log(alpha), v + eps * th.log(beta)


def _working_set_stage(
    prob: _Problem, u: th.Tensor, v: th.Tensor, tol: float, max_iter: int, cg_max_iter: int, verbose: bool
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """L2 stage on a working set of pairs when few are active, checked against the full matrix.

    The working set holds the active pairs plus the ``_WORKING_SET_K`` best candidates of every row and
    column. Newton runs on it; a pass over the full matrix then either confirms that no other pair is
    active (the solution is exact for the full problem) or enlarges the set and continues.
    """
    u = prob.block_maximize(u, v, side="u")
    v = prob.block_maximize(u, v, side="v")
    n, m = prob.shape
    total = 0
    work: th.Tensor | None = None
    k = _WORKING_SET_K
    for _ in range(_WORKING_SET_ROUNDS):
        z = prob.z(u, v)
        if prob.mask is not None:
            z.masked_fill_(prob.mask == 0, -float("inf"))
        if float((z > 0).sum()) > _WORKING_SET_FRACTION * n * m:
            u, v, it, conv = _newton_stage(prob, u, v, tol, max_iter - total, cg_max_iter, verbose, initial_block=False)
            return u, v, total + it, conv
        # The set only grows (no cycling), and the candidates per row double after each miss.
        work = z > 0 if work is None else work | (z > 0)
        work.scatter_(1, th.topk(z, min(k, m), dim=1).indices, True)
        work.scatter_(0, th.topk(z, min(k, n), dim=0).indices, True)
        k *= 2
        if prob.mask is not None:
            work &= prob.mask > 0
        rows, cols = th.nonzero(work, as_tuple=True)
        del z
        sub = _SparseProblem(prob, rows, cols)
        u, v, it, conv = _newton_stage(sub, u, v, tol, max_iter - total, cg_max_iter, verbose, initial_block=False)
        total += it
        z = prob.z(u, v)
        outside = (z > 0) & ~work
        if prob.mask is not None:
            outside &= prob.mask > 0
        if conv and not bool(outside.any()):
            return u, v, total, True
        if total >= max_iter:
            break
    return u, v, total, False


def _newton_stage(
    prob: _Problem | _SparseProblem,
    u: th.Tensor,
    v: th.Tensor,
    tol: float,
    max_iter: int,
    cg_max_iter: int,
    verbose: bool,
    initial_block: bool = True,
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """Newton iterations at a fixed eps from ``(u, v)``."""
    n = prob.shape[0]
    if initial_block:
        u = prob.block_maximize(u, v, side="u")
        v = prob.block_maximize(u, v, side="v")
        if isinstance(prob, _Problem) and isinstance(prob.r, Entropic):
            u, v = _sinkhorn_sweeps(prob, u, v, tol)
    loss = prob.loss(u, v)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        z = prob.z(u, v)
        curv = _Curvature(prob, z)
        ea, eb = curv.marginal_error(prob)
        if verbose:
            print(f"eps {prob.r.reg:.2e}  newton {it:3d}  dual {-loss:.12e}  marginal error {max(ea, eb):.3e}")
        if max(ea, eb) <= tol:
            converged = True
            it -= 1
            break
        g = th.cat([curv.row_mass - prob.a, curv.col_mass - prob.b])
        d1, d2 = curv.d1, curv.d2
        scale = float(th.cat([d1, d2]).max())
        free_u, free_v = d1 > 1e-14 * scale, d2 > 1e-14 * scale
        delta = max(1e-12 * scale, _DELTA * min(1.0, max(ea, eb)) * float(th.cat([d1, d2]).mean()))
        op = _HessianOperator(curv, delta, free_u, free_v)
        rhs = -g * op.free
        if sum(prob.shape) <= _DENSE_SOLVE_MAX:
            step = op.solve_dense(rhs)
        elif curv.direct:
            step = op.solve_sparse(rhs)
        else:
            step = _pcg(op, rhs, op.diagonal, rtol=min(0.1, max(ea, eb) ** 0.5), max_iter=cg_max_iter)
        slope = float(g @ step)
        along = prob.line_loss(u, v, step[:n], step[n:], z, curv.active)
        del z
        t, accepted = 1.0, False
        if abs(slope) < 1e-13 * max(1.0, abs(loss)):
            # The expected decrease is below the float64 resolution of the objective, where Armijo would
            # accept meaningless steps; near the optimum the marginal error is the merit function instead.
            for _ in range(10):
                trial = _Curvature(prob, prob.z(u + t * step[:n], v + t * step[n:]))
                trial_err = max(trial.marginal_error(prob))
                if trial_err < max(ea, eb):
                    accepted, cand = True, prob.loss(u + t * step[:n], v + t * step[n:])
                    break
                t *= 0.5
        else:
            for _ in range(50):
                cand = along(t)
                if cand <= loss + 1e-4 * t * slope:
                    accepted = True
                    break
                t *= 0.5
        if accepted:
            u, v = u + t * step[:n], v + t * step[n:]
        # Exact block steps never decrease the dual: they repair isolated points, or replace a failed step.
        if not accepted:
            u = prob.block_maximize(u, v, side="u")
            v = prob.block_maximize(u, v, side="v")
        else:
            iso_u, iso_v = th.nonzero(~free_u).flatten(), th.nonzero(~free_v).flatten()
            u = prob.block_maximize(u, v, iso_u, side="u")
            v = prob.block_maximize(u, v, iso_v, side="v")
            if iso_u.numel() + iso_v.numel() == 0:
                loss = cand
                continue
        loss = prob.loss(u, v)
    return u, v, it, converged


def solve_discrete(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    reg: float,
    reg_type: str = "l2",
    mask: ArrayLike | None = None,
    tol: float = 1e-9,
    max_iter: int = 500,
    cg_max_iter: int = 1000,
    verbose: bool = False,
) -> OTResult:
    r"""Solve regularised OT between discrete measures exactly (to ``tol``), with an optional mask.

    .. math::
        \min_{T \in U(a, b),\ T_{ij} = 0 \text{ where } m_{ij} = 0}
        \langle M, T \rangle + \varepsilon \sum_{ij} a_i b_j \phi\Big(\frac{T_{ij}}{a_i b_j}\Big)

    with :math:`\phi(h) = h^2` for ``reg_type="l2"`` (the paper's Eq. 3-4, density-based) and
    :math:`\phi(h) = h\log h - h + 1` for ``"entropic"``. The dual (Eq. 5, 14) is maximised by a
    regularised semismooth Newton method in float64 (see :mod:`neural_ot.discrete`).

    Parameters
    ----------
    a : array-like of shape (n,) or None
        Source weights, non-negative; uniform when ``None``.
    b : array-like of shape (m,) or None
        Target weights, same total mass as ``a`` up to a relative ``tol`` (a larger mismatch raises
        ``ValueError``: it could never converge); uniform when ``None``. The solver rescales ``b`` to the mass
        of ``a``; ``marginal_errors`` are measured against the weights as given.
    M : array-like of shape (n, m)
        Cost matrix, finite.
    reg : float
        :math:`\varepsilon > 0`, the paper's :math:`\lambda`. POT's ``smooth_ot_dual(reg_type="l2")``
        uses :math:`\tfrac{r}{2}\|T\|^2`; with uniform weights it matches ``reg = r / (2 n m)``.
    reg_type : {"l2", "entropic"}
    mask : array-like of shape (n, m), optional
        0/1 mask, e.g. from :func:`~neural_ot.keypoint_mask`; no row or column may be all zero, and
        matched keypoints must carry equal mass (``a[i_k] == b[j_k]``), else the problem is infeasible.
    tol : float
        Target relative L1 marginal error.
    max_iter : int
        Maximum Newton iterations.
    cg_max_iter : int
        Maximum conjugate-gradient iterations per Newton step.
    verbose : bool
        Print one line per iteration.

    Returns
    -------
    OTResult
        Arrays of the same kind (numpy or torch) and floating dtype as the inputs.

    Examples
    --------
    >>> import numpy as np, neural_ot
    >>> M = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = neural_ot.solve_discrete(None, None, M, reg=0.1)
    >>> np.round(res.plan, 6)
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    regularizer = get_regularizer(reg, reg_type)
    if not tol > 0:
        raise ValueError(f"`tol` must be positive, got {tol!r}")
    check_positive_int(max_iter, "max_iter")
    check_positive_int(cg_max_iter, "cg_max_iter")
    out_dtype = result_dtype(M, a, b)
    as_numpy = is_numpy(M)
    C = to_tensor(M, "M", dtype=th.float64)
    check_matrix(C, "M")
    n, m = C.shape
    at = C.new_full((n,), 1.0 / n) if a is None else to_tensor(a, "a", th.float64, C.device)
    bt = C.new_full((m,), 1.0 / m) if b is None else to_tensor(b, "b", th.float64, C.device)
    check_weights(at, n, "a")
    check_weights(bt, m, "b")
    # `b` is rescaled to the mass of `a`, which leaves the relative mismatch in the marginal errors: more than
    # `tol` could never converge.
    check_equal_mass(at, bt, rtol=tol)
    maskt = None
    if mask is not None:
        maskt = to_tensor(mask, "mask", th.float64, C.device)
        check_mask(maskt, (n, m))
        check_masked_feasibility(at, bt, maskt, rtol=tol)
    # Points of zero weight carry no mass; the solver works on the support and fills the rest.
    keep_a, keep_b = at > 0, bt > 0
    full_support = bool(keep_a.all()) and bool(keep_b.all())
    sub_C = C if full_support else C[keep_a][:, keep_b]
    sub_mask = None if maskt is None else (maskt if full_support else maskt[keep_a][:, keep_b])
    if sub_mask is not None and not full_support:
        check_mask(sub_mask, tuple(sub_mask.shape))  # type: ignore[arg-type]
    prob = _Problem(at[keep_a], bt[keep_b] * (at.sum() / bt.sum()), sub_C, sub_mask, regularizer)
    u_s, v_s, n_iter, converged = _newton(prob, tol, max_iter, cg_max_iter, verbose)
    u = C.new_zeros(n)
    v = C.new_zeros(m)
    u[keep_a], v[keep_b] = u_s, v_s
    full = _Problem(at, bt, C, maskt, regularizer)
    H, T = full.plan(u, v)
    H = H * keep_a[:, None] * keep_b[None, :]
    T = at[:, None] * H * bt[None, :]
    transport = float((C * T).sum())
    value = transport + float(at @ full.masked(regularizer.primal(H)) @ bt)
    value_dual = -prob.loss(u_s, v_s)
    if not (value == value and value_dual == value_dual):
        raise FloatingPointError("solve_discrete produced NaN; the problem is badly scaled (check `M` and `reg`)")
    # `converged` means what OTResult says: the errors against the weights as given (not rescaled) are <= tol.
    errors = full.errors(T)
    converged = converged and max(errors) <= tol
    if not converged:
        warnings.warn(
            f"solve_discrete did not reach tol={tol:g} (marginal errors {errors[0]:.3g}, {errors[1]:.3g}) in "
            f"{n_iter} Newton iterations; see `marginal_errors`",
            RuntimeWarning,
            stacklevel=2,
        )

    def out(t: th.Tensor) -> ArrayLike:
        return to_output(t, as_numpy, out_dtype)

    return OTResult(
        plan=out(T),
        u=out(u),
        v=out(v),
        density=out(H),
        value=value,
        value_dual=value_dual,
        transport_cost=transport,
        marginal_errors=errors,
        n_iter=n_iter,
        n_sinkhorn=prob.sinkhorn_sweeps,
        converged=converged,
        reg=regularizer.reg,
        reg_type=regularizer.name,
    )
