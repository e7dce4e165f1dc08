"""The discrete regularised OT dual as an objective with gradient and curvature (used by the Newton solver).

:class:`_Problem` holds one dense problem (weights, cost, optional mask, regulariser); :class:`_SparseProblem`
restricts it to a working set of pairs. Both give the dual loss, its gradient, the plan of given potentials
and the exact block maximisation used to repair isolated points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch as th

from neural_ot.duals import relative_marginal_errors
from neural_ot.regularizers import Regularizer, SquaredL2


def flat_nonzero(mask: th.Tensor) -> th.Tensor:
    """Return the indices of the true entries of a contiguous 1-D boolean tensor, in increasing order.

    On the CPU numpy's ``flatnonzero`` (on the same memory) is 2-12x faster than ``torch.nonzero`` (measured on
    4M entries, 0.5-50% true).
    """
    if mask.device.type == "cpu":
        return th.from_numpy(np.flatnonzero(mask.numpy()))
    return th.nonzero(mask).squeeze(1)


def above(x: th.Tensor, threshold: float = 0.0) -> th.Tensor:
    """Return the boolean ``x > threshold`` (NaN is not above anything).

    On the CPU by numpy on the same memory: torch's comparison into a new boolean tensor took 2-4x as long on 4M
    entries (one thread, ``examples/benchmarks/bench_dense_passes.py``), and so did counting it.
    """
    if x.device.type == "cpu":
        return th.from_numpy(np.greater(x.detach().numpy(), threshold))
    return x > threshold


def count_true(mask: th.Tensor, dim: int | None = None) -> th.Tensor:
    """Return the number of true entries of a boolean tensor, in all (a 0-d tensor) or along ``dim`` (int32 on the CPU)."""
    if mask.device.type == "cpu":
        if dim is None:
            return th.tensor(np.count_nonzero(mask.numpy()))
        return th.from_numpy(mask.numpy().view(np.uint8).sum(dim, dtype=np.int32))
    return th.count_nonzero(mask) if dim is None else mask.sum(dim)


def count_above(x: th.Tensor, threshold: float = 0.0) -> int:
    """Return the number of entries of ``x`` above ``threshold`` (NaN is not)."""
    return int(count_true(above(x, threshold)))


def indicator(x: th.Tensor, threshold: float, out: th.Tensor) -> th.Tensor:
    """Write ``1`` where ``x > threshold`` and ``0`` elsewhere into ``out`` (of any floating dtype); return ``out``.

    Into ``x``'s dtype by torch; into another (float32 from float64) on the CPU by numpy, which casts the comparison
    as it goes: torch's comparison into a float64 buffer then copied took 2-3x as long, while into ``x``'s own dtype
    torch was as fast or faster (``examples/benchmarks/bench_dense_passes.py``).
    """
    if out.dtype == x.dtype:
        return th.gt(x, threshold, out=out)
    if x.device.type == "cpu" and out.device.type == "cpu":
        np.greater(x.detach().numpy(), threshold, out=out.numpy(), casting="unsafe")
        return out
    return out.copy_(x > threshold)


def true_pairs(mask: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Flat indices, rows and columns of the true entries of a contiguous boolean ``(n, m)`` matrix, row-major.

    Gathering through the flat indices (``X.view(-1).index_select(0, flat)``) is 2x faster than ``X[rows, cols]``.
    """
    m = mask.shape[1]
    flat = flat_nonzero(mask.view(-1))
    if flat.device.type == "cpu":  # numpy's integer division: 3x torch's on the CPU
        rows = th.from_numpy(flat.numpy() // m)
    else:
        rows = th.div(flat, m, rounding_mode="floor")
    return flat, rows, flat - rows * m


def pair_sums(values: th.Tensor, rows: th.Tensor, cols: th.Tensor, n: int, m: int) -> tuple[th.Tensor, th.Tensor]:
    """Row and column sums ``(n,)``, ``(m,)`` of the values of pairs ``(rows, cols)`` (a sparse matrix's margins)."""
    row_sums = th.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, rows, values)
    return row_sums, th.zeros(m, dtype=values.dtype, device=values.device).index_add_(0, cols, values)


class _Problem:
    """Float64 data of one discrete problem, with the dual objective and its derivatives."""

    def __init__(self, a: th.Tensor, b: th.Tensor, C: th.Tensor, mask: th.Tensor | None, regularizer: Regularizer):
        self.a, self.b, self.C, self.mask, self.r = a, b, C, mask, regularizer
        self.shape = C.shape
        self.sinkhorn_sweeps = 0  # counted for the result
        self.stalled = False  # set when Newton stopped making progress before `tol` (the result's status)
        self._cost_range: tuple[float, float] | None = None
        # An intermediate continuation stage (solved to 1e-2): its dense curvature products may run in float32.
        self.coarse = False
        # (n, m) buffers reused by the Newton iterations of every stage: a fresh (n, m) tensor costs a page fault per
        # 4 KiB once glibc returns freed memory to the system (half the time of a solve at n = 1000).
        self._scratch: dict[str, th.Tensor] = {}
        self._off: th.Tensor | None | bool = False  # not yet computed; see `off`
        self._single: _Problem | None = None
        self._z_of: list[th.Tensor] = []  # the potentials whose `z_allowed` the "z" buffer holds (shared by stages)

    @property
    def off(self) -> th.Tensor | None:
        """Boolean ``(n, m)``: the pairs off the support (masked, or of a zero-weight point); ``None`` if there are none.

        Their density is zeroed by ``masked_fill``, not multiplied by 0: an entropic density there can overflow to
        ``inf`` (the potentials do not bound ``z`` off the support), and ``inf * 0`` is NaN.
        """
        if self._off is False:
            off = None if self.mask is None else self.mask == 0
            for weights, dim in ((self.a, 1), (self.b, 0)):
                if not bool((weights > 0).all()):
                    zero = (weights == 0).unsqueeze(dim).expand(self.shape)
                    off = zero if off is None else off | zero
            self._off = off
        return self._off  # type: ignore[return-value]

    @property
    def cost_range(self) -> tuple[float, float]:
        """``(min C, max C)``, computed once (one pass) for all stages."""
        if self._cost_range is None:
            lo, hi = th.aminmax(self.C)
            self._cost_range = (float(lo), float(hi))
        return self._cost_range

    def with_regularizer(self, regularizer: Regularizer, coarse: bool = False) -> _Problem:
        """Return the same data with another regulariser (a continuation stage), leaving this problem unchanged."""
        stage = _Problem(self.a, self.b, self.C, self.mask, regularizer)
        stage._cost_range, stage._scratch, stage._z_of, stage.coarse = self._cost_range, self._scratch, self._z_of, coarse
        return stage

    def single(self) -> _Problem:
        """Return the same problem in float32 (made once), with buffers of its own."""
        if self._single is None:
            mask = None if self.mask is None else self.mask.float()
            self._single = _Problem(self.a.float(), self.b.float(), self.C.float(), mask, self.r)
            self._single._cost_range = self.cost_range
        return self._single

    def cost_offset(self) -> float:
        """Return the constant taken off the costs before a balanced solve: their minimum if above their spread, else 0.

        A balanced plan does not change when a constant is added to the costs (it moves into ``u``), but the rounding
        of ``u + v - C`` grows with the costs' magnitude: on costs ``1e6 + [0, 1]`` the solve stalled at a marginal
        error of 2e-8 where ``[0, 1]`` reached 3e-11 (``tests/test_solve_api.py``).
        """
        lo, hi = self.cost_range
        return lo if abs(lo) > hi - lo else 0.0

    def shifted(self, offset: float) -> _Problem:
        """Return the same problem on the costs ``C - offset`` (a new matrix), whose balanced plans are this one's."""
        lo, hi = self.cost_range
        shifted = _Problem(self.a, self.b, self.C - offset, self.mask, self.r)
        shifted._cost_range = (lo - offset, hi - offset)
        return shifted

    def scratch(self, name: str, dtype: th.dtype | None = None) -> th.Tensor:
        """Return the reused ``(n, m)`` buffer ``name``, of ``dtype`` (default ``C``'s; one dtype per name).

        ``"z"`` holds a Newton iteration's ``z``, ``"A"`` (or ``"A32"``) its curvature's active pairs, ``"tmp"``
        anything consumed at once.
        """
        if name == "z":
            self._z_of.clear()  # the caller writes it
        if name not in self._scratch:
            self._scratch[name] = th.empty_like(self.C, dtype=dtype)
        return self._scratch[name]

    def adopt_scratch(self, other: _Problem) -> None:
        """Take over ``other``'s buffers (same shape): the plan of the result is then written into pages in use."""
        if other.C.shape == self.C.shape and other.C.dtype == self.C.dtype:
            self._scratch = other._scratch

    def z(self, u: th.Tensor, v: th.Tensor, out: th.Tensor | None = None) -> th.Tensor:
        """``u_i + v_j - C_ij``, in ``out`` or one new ``(n, m)`` tensor."""
        return th.add(u[:, None], v[None, :], out=out).sub_(self.C)

    def z_allowed(self, u: th.Tensor, v: th.Tensor) -> th.Tensor:
        """``z`` of ``(u, v)`` with the masked pairs at ``-inf``, in the ``"z"`` buffer; not to be written by the caller.

        Computed once for given potentials (the same tensors): the full check that ends a working-set stage and the
        start of the next stage or round read the same ``z``.
        """
        held = self._z_of
        if len(held) == 2 and held[0] is u and held[1] is v and "z" in self._scratch:
            return self._scratch["z"]
        z = self.z(u, v, out=self.scratch("z"))
        if self.mask is not None:
            z.masked_fill_(self.mask == 0, -float("inf"))
        held[:] = [u, v]
        return z

    def masked(self, X: th.Tensor) -> th.Tensor:
        return X if self.off is None else X.masked_fill(self.off, 0.0)

    def rounding_floor(self, u: th.Tensor, v: th.Tensor) -> float:
        """Relative marginal error that rounding ``u_i + v_j - C_ij`` in float64 alone can cause in the plan of ``(u, v)``.

        Each ``z`` is off by up to float64's epsilon times ``|u_i| + |v_j| + |C_ij|``, and the plan by ``a_i b_j`` times
        the density's slope there (:meth:`~neural_ot.regularizers.Regularizer.curvature`) times that: a bound, reached
        only if every error had one sign. Near the unregularised limit it exceeds the usual ``tol`` (L2, ``reg = 1e-12``
        on unit costs, 200 x 150: about 1e-7).
        """
        z = self.z(u, v)
        size = th.add(u.abs()[:, None], v.abs()[None, :]).add_(self.C.abs())
        bound = float(self.a @ self.masked(self.r.curvature(z)).mul_(size) @ self.b)
        return bound * float(th.finfo(self.C.dtype).eps) / float(self.a.sum())

    def floor_note(self, u: th.Tensor, v: th.Tensor, errors: tuple[float, float]) -> str:
        """Return a warning's last words when ``errors`` are within the plan's float64 rounding floor (else nothing)."""
        floor = self.rounding_floor(u, v)
        if not max(errors) <= floor < float("inf"):  # an entropic iterate far from the optimum can overflow the bound
            return ""
        return (
            f". That is within the float64 rounding floor of this plan (up to {floor:.1g} at reg={self.r.reg:g}): a tol "
            "below it cannot be met, a larger tol or reg can"
        )

    def loss(self, u: th.Tensor, v: th.Tensor) -> float:
        """Negative dual objective (minimised); ``inf`` on overflow."""
        if isinstance(self.r, SquaredL2):  # in place on z: one (n, m) allocation instead of four
            pen = self.z(u, v, out=self.scratch("tmp")).relu_().square_()
            pen = pen if self.mask is None else pen.mul_(self.mask)
            value = float((self.a @ pen @ self.b) / (4.0 * self.r.reg) - self.a @ u - self.b @ v)
        else:
            pen = self.masked(self.r.conjugate(self.z(u, v)))
            value = float(self.a @ pen @ self.b - self.a @ u - self.b @ v)
        return value if value == value else float("inf")

    def line_loss(
        self,
        u: th.Tensor,
        v: th.Tensor,
        du: th.Tensor,
        dv: th.Tensor,
        z: th.Tensor,
        active: th.Tensor | None,
        dense: bool = False,
    ) -> Callable[[float], float]:
        """Loss along ``(u, v) + t (du, dv)`` for ``t`` in ``[0, 1]``, with ``z`` the current ``u + v - C``.

        The L2 penalty vanishes where ``z + t s <= 0`` for every such ``t``, so only the pairs active now
        (``active``, a boolean matrix; ``None`` when ``dense``) or at ``t = 1`` are kept: one dense pass per line
        search. When most pairs are active (``dense``), gathering them costs more than the zeros it skips, and each
        trial is a few dense passes on ``z`` instead.
        """
        if not isinstance(self.r, SquaredL2) or (active is None and not dense):
            return lambda t: self.loss(u + t * du, v + t * dv)
        lin0, lin1 = float(self.a @ u + self.b @ v), float(self.a @ du + self.b @ dv)
        if dense or active is None:
            scale = 1.0 / (4.0 * self.r.reg)

            def f_dense(t: float) -> float:
                y = th.add(z, du[:, None], alpha=t, out=self.scratch("tmp")).add_(dv[None, :], alpha=t).relu_().square_()
                if self.mask is not None:
                    y.mul_(self.mask)
                return scale * float(self.a @ y @ self.b) - lin0 - t * lin1

            return f_dense
        keep = above(th.add(z, du[:, None], out=self.scratch("tmp")).add_(dv[None, :]))
        keep |= active
        if self.mask is not None:
            keep &= self.mask > 0
        flat, rows, cols = true_pairs(keep)
        zc, sc = z.view(-1).index_select(0, flat), du.index_select(0, rows).add_(dv.index_select(0, cols))
        wc = self.a.index_select(0, rows).mul_(self.b.index_select(0, cols)).div_(4.0 * self.r.reg)
        buf = th.empty_like(zc)

        def f(t: float) -> float:
            return float(wc @ th.add(zc, sc, alpha=t, out=buf).relu_().square_()) - lin0 - t * lin1

        return f

    def plan(self, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Density ``H`` and plan ``a_i b_j H_ij`` of ``(u, v)``: two ``(n, m)`` tensors, no other temporary.

        They take over the ``"z"`` and ``"tmp"`` buffers when the solve has them (the problem's last use): a fresh
        ``(n, m)`` tensor costs a page fault per 4 KiB (docs/benchmarks.rst, "Fewer fresh buffers").
        """
        H = self.r.density_(self.z(u, v, out=self._scratch.pop("z", None)))
        if self.off is not None:
            H.masked_fill_(self.off, 0.0)
        T = th.mul(H, self.a[:, None], out=self._scratch.pop("tmp", None))
        return H, T.mul_(self.b[None, :])

    def errors(self, T: th.Tensor) -> tuple[float, float]:
        return relative_marginal_errors(T.sum(1), T.sum(0), self.a, self.b)

    def plan_marginals(self, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Row and column sums of the plan of ``(u, v)``, through the ``"tmp"`` buffer (no new ``(n, m)`` tensor).

        The plan is ``a_i b_j H_ij``, so its marginals are ``a * (H b)`` and ``b * (H^T a)``: matrix-vector products
        with the density, which is all a trial point of the line search needs (not its curvature).
        """
        H = self.r.density_(self.z(u, v, out=self.scratch("tmp")))
        if self.off is not None:
            H.masked_fill_(self.off, 0.0)
        return self.a * (H @ self.b), self.b * (self.a @ H)

    def marginal_errors(self, u: th.Tensor, v: th.Tensor) -> tuple[float, float]:
        """Relative L1 marginal errors of the plan of ``(u, v)`` (:meth:`plan_marginals`)."""
        return relative_marginal_errors(*self.plan_marginals(u, v), self.a, self.b)

    def block_maximize(self, u: th.Tensor, v: th.Tensor, rows: th.Tensor | None = None, side: str = "u") -> th.Tensor:
        """Exact maximisation of the dual over ``u`` (or ``v``) on the selected rows, the other fixed."""
        if side == "u":
            C, other, w, mask = self.C, v, self.b, self.mask
            current = u
        else:
            C, other, w = self.C.T, u, self.a
            mask = None if self.mask is None else self.mask.T
            current = v
        if rows is None:  # every row: no gathered copy of C
            ms = None if mask is None else mask > 0
            return self.r.row_potential(C - other[None, :], w, ms)
        if rows.numel() == 0:
            return current
        Cs = C[rows] - other[None, :]  # c_ij - v_j: the row's thresholds
        ms = None if mask is None else mask[rows] > 0
        out = current.clone()
        out[rows] = self.r.row_potential(Cs, w, ms)
        return out


class _SparseProblem:
    """The L2 problem restricted to a working set of pairs (``rows``, ``cols``); O(|set|) per evaluation.

    Used for small eps, where few pairs are active: Newton iterations run on the working set, and the
    driver checks on the full matrix that no pair outside it has become active.
    """

    def __init__(self, full: _Problem, rows: th.Tensor, cols: th.Tensor, flat: th.Tensor | None = None) -> None:
        self.stalled = False
        self.full, self.a, self.b, self.r = full, full.a, full.b, full.r
        self.rows, self.cols = rows, cols
        # `flat`: the pairs' row-major indices, if known (a flat gather is 2x faster than C[rows, cols]).
        self.c = full.C[rows, cols] if flat is None else full.C.view(-1).index_select(0, flat)
        self.ab = self.a.index_select(0, rows).mul_(self.b.index_select(0, cols))
        self.shape = full.C.shape
        # Working-set buffers, as the full problem's: a set holds up to a quarter of the pairs (a million at
        # n = 2000), and a fresh tensor of that size costs more in page faults than the operation on it.
        self._scratch: dict[str, th.Tensor] = {}

    def scratch(self, name: str) -> th.Tensor:
        """Return the reused working-set buffer ``name`` (``"z"``, ``"tmp"``: as :meth:`_Problem.scratch`)."""
        if name not in self._scratch:
            self._scratch[name] = th.empty_like(self.c)
        return self._scratch[name]

    def z(self, u: th.Tensor, v: th.Tensor, out: th.Tensor | None = None) -> th.Tensor:
        """``u_i + v_j - c_ij`` on the working set's pairs, in ``out`` or a new tensor."""
        out = th.index_select(u, 0, self.rows, out=out) if out is not None else u.index_select(0, self.rows)
        return out.add_(v.index_select(0, self.cols)).sub_(self.c)

    def marginal_errors(self, u: th.Tensor, v: th.Tensor) -> tuple[float, float]:
        """Relative L1 marginal errors of the plan of ``(u, v)`` (L2: ``a_i b_j z_+ / (2 eps)`` on the set's pairs)."""
        t = self.z(u, v, out=self.scratch("tmp")).relu_().mul_(self.ab).div_(2.0 * self.r.reg)
        return relative_marginal_errors(*pair_sums(t, self.rows, self.cols, *self.shape), self.a, self.b)

    def loss(self, u: th.Tensor, v: th.Tensor) -> float:
        pen = self.z(u, v, out=self.scratch("tmp")).relu_().square_()  # the L2 conjugate, times 4 eps
        value = float(self.ab @ pen) / (4.0 * self.r.reg) - float(self.a @ u + self.b @ v)
        return value if value == value else float("inf")

    def line_loss(
        self,
        u: th.Tensor,
        v: th.Tensor,
        du: th.Tensor,
        dv: th.Tensor,
        z: th.Tensor,
        active: th.Tensor | None,
        dense: bool = False,
    ) -> Callable[[float], float]:
        s = du.index_select(0, self.rows).add_(dv.index_select(0, self.cols))
        lin0, lin1 = float(self.a @ u + self.b @ v), float(self.a @ du + self.b @ dv)
        scale, buf = 1.0 / (4.0 * self.r.reg), self.scratch("tmp")

        def f(t: float) -> float:
            return scale * float(self.ab @ th.add(z, s, alpha=t, out=buf).relu_().square_()) - lin0 - t * lin1

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
        out[sel] = self.r.row_potential(thresholds, w)
        return out
