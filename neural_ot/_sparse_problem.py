"""The L2 dual restricted to a working set of pairs, narrowed further while its Newton iterations allow.

:class:`_SparseProblem` gives what :class:`neural_ot._dual_problem._Problem` gives (loss, plan marginals, line
search, block steps), at O(|set|) per evaluation. Within a continuation stage most of the set's pairs turn inactive (at
``n = 2000``, POT reg 0.1, the second stage's million pairs end with 62,000 active); the iterations then run on the
pairs near activity alone (:meth:`_SparseProblem.z_iterate`), and the whole set comes back as soon as a dropped pair
could have become active.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch as th

from neural_ot._dual_problem import _Problem, count_above, flat_nonzero, pair_sums
from neural_ot.duals import relative_marginal_errors

# A set of at least _NARROW_MIN_PAIRS pairs, of which fewer than 1 / _NARROW_KEEP are active, keeps its _NARROW_KEEP x
# (active pairs) of largest z for the next iterations.
_NARROW_MIN_PAIRS = 20_000
_NARROW_KEEP = 4


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
        self._whole: tuple[th.Tensor, ...] | None = None  # (rows, cols, c, ab) of the whole set while narrowed
        # Each narrowing's potentials and margin: a pair it dropped had z <= -margin there.
        self._anchors: list[tuple[th.Tensor, th.Tensor, float]] = []
        self._narrowable = True  # until the set had to be widened once

    def z_iterate(self, u: th.Tensor, v: th.Tensor, near: float) -> th.Tensor:
        """``z`` of a Newton iterate in the ``"z"`` buffer, on the pairs that can carry curvature (``z > -near``).

        A pair dropped at potentials ``(u0, v0)`` with ``z <= -margin`` has ``z <= -margin + max(u - u0) + max(v - v0)``
        now: while that stays below ``-near`` for every narrowing, the dropped pairs are neither active nor near, and
        the iterate's marginals, loss and curvature on the narrowed set are the whole set's. Else the whole set comes
        back (and stays). The set narrows when fewer than ``1 / _NARROW_KEEP`` of its pairs are active.
        """
        for u0, v0, margin in self._anchors:
            if float((u - u0).max()) + float((v - v0).max()) >= margin - near:
                self.widen()
                self._narrowable = False
                break
        z = self.z(u, v, out=self.scratch("z"))
        if not self._narrowable or z.numel() < _NARROW_MIN_PAIRS:
            return z
        keep = _NARROW_KEEP * count_above(z)
        if keep >= z.numel():
            return z
        margin = -_kth_smallest(z, z.numel() - keep)  # the `keep` largest z are above -margin
        if margin <= 2.0 * near:  # the kept pairs' z would reach too close to the kink
            return z
        self._narrow(flat_nonzero(z > -margin))
        self._anchors.append((u.clone(), v.clone(), margin))
        return self.z(u, v, out=self.scratch("z"))

    def _narrow(self, keep: th.Tensor) -> None:
        if self._whole is None:
            self._whole = (self.rows, self.cols, self.c, self.ab)
        self.rows, self.cols, self.c, self.ab = (t.index_select(0, keep) for t in (self.rows, self.cols, self.c, self.ab))
        self._scratch = {}

    def widen(self) -> None:
        """Return to the whole working set (after a narrowing; else nothing)."""
        if self._whole is not None:
            self.rows, self.cols, self.c, self.ab = self._whole
            self._whole, self._anchors, self._scratch = None, [], {}

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
        self.widen()  # a row's pairs far from activity bound its potential too
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


def _kth_smallest(x: th.Tensor, k: int) -> float:
    """Return the ``k``-th smallest entry of a 1-D tensor (``k`` from 1); numpy's selection on the CPU."""
    if x.device.type == "cpu":
        return float(np.partition(x.numpy(), k - 1)[k - 1])
    return float(th.kthvalue(x, k).values)
