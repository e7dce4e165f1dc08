r"""Regularisers of the transport plan, in the density-based convention of the paper.

For a plan :math:`T = a b^\top \odot H` with density :math:`H`, the regularised primal is

.. math:: \min_{T \in U(a, b)} \langle C, T \rangle + \varepsilon \sum_{ij} a_i b_j \, \phi(H_{ij}),

with :math:`\phi(h) = h^2` for ``"l2"`` (the paper's Eq. 3-4) and :math:`\phi(h) = h \log h - h + 1`
for ``"entropic"`` (KL to :math:`a b^\top`). Its dual (Eq. 5) is

.. math:: \max_{u, v} \sum_i a_i u_i + \sum_j b_j v_j - \sum_{ij} a_i b_j m_{ij} \, \phi^*(u_i + v_j - C_{ij}),

where :math:`m` is an optional 0/1 mask (Eq. 14) and the density is :math:`H = (\phi^*)'(z)` (Eq. 6).
Each regulariser exposes :math:`\phi^*`, its first derivative (the density) and its second derivative
(the curvature used by Newton's method).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
import torch as th

from neural_ot._validation import check_reg

RegType = Literal["l2", "entropic"]


class Regularizer(ABC):
    """Convex regulariser :math:`\\varepsilon \\phi` of the plan density.

    Parameters
    ----------
    reg : float
        Regularisation strength :math:`\\varepsilon > 0` (the paper's :math:`\\lambda`).
    """

    name: str = ""

    def __init__(self, reg: float) -> None:
        self.reg = check_reg(reg)

    @abstractmethod
    def conjugate(self, z: th.Tensor) -> th.Tensor:
        """Per-pair dual penalty :math:`\\varepsilon\\phi^*(z / \\varepsilon)`, with ``z = u + v - C``."""

    @abstractmethod
    def density(self, z: th.Tensor) -> th.Tensor:
        """Plan density ``H`` (the compatibility function) for ``z = u + v - C``."""

    @abstractmethod
    def inverse_density(self, h: th.Tensor) -> th.Tensor:
        """Return the ``z`` at which :meth:`density` equals ``h > 0``."""

    @abstractmethod
    def curvature(self, z: th.Tensor) -> th.Tensor:
        """Return the derivative of :meth:`density` with respect to ``z``."""

    @abstractmethod
    def primal(self, density: th.Tensor) -> th.Tensor:
        """Per-pair primal penalty :math:`\\varepsilon \\phi(H)`."""

    @abstractmethod
    def density_(self, z: th.Tensor) -> th.Tensor:
        """:meth:`density` computed in place of ``z`` (no temporary; not for tensors that need gradients)."""

    @abstractmethod
    def penalty_sums(self, tz: float, total: float, support_mass: float) -> tuple[float, float]:
        """Primal and dual penalties of a plan, summed, from three of its scalars (no pass over the plan).

        For the plan ``T = a b^T m H`` of ``z = u + v - C``, returns ``sum_ij a_i b_j m_ij eps phi(H_ij)`` and
        ``sum_ij a_i b_j m_ij eps phi*(z_ij)`` given ``tz = sum_ij T_ij z_ij`` (which is
        ``u . T 1 + v . T^T 1 - <C, T>``), ``total = sum_ij T_ij`` and ``support_mass = sum_ij a_i b_j m_ij``.
        """

    @abstractmethod
    def row_potential(self, w: th.Tensor, b: th.Tensor, mask: th.Tensor | None = None) -> th.Tensor:
        """Return the ``u_i`` with ``sum_j b_j m_ij density(u_i - w_ij) = 1`` for every row (the smooth c-transform).

        Parameters
        ----------
        w : torch.Tensor of shape (n, m)
            ``C_ij - v_j``.
        b : torch.Tensor of shape (m,)
            Non-negative column weights.
        mask : torch.Tensor of shape (n, m), optional
            Boolean; ``False`` drops a pair. Every row must keep a column of positive weight.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reg={self.reg:g})"


class SquaredL2(Regularizer):
    """Density-based squared L2 regulariser (Dessein et al. 2018; the paper's Eq. 4)."""

    name = "l2"

    def conjugate(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.relu(z).square() / (4.0 * self.reg)

    def density(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return (z / (2.0 * self.reg)).relu_()  # one temporary (autograd-safe: division does not save its output)

    def inverse_density(self, h: th.Tensor) -> th.Tensor:  # noqa: D102
        return 2.0 * self.reg * h

    def curvature(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return (z > 0).to(z.dtype) / (2.0 * self.reg)

    def primal(self, density: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * density.square()

    def density_(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return z.div_(2.0 * self.reg).relu_()

    def penalty_sums(self, tz: float, total: float, support_mass: float) -> tuple[float, float]:  # noqa: D102
        # Where T > 0, z = 2 eps H, so eps H^2 = z H / 2 and both penalties are tz / 2.
        return 0.5 * tz, 0.5 * tz

    def row_potential(self, w: th.Tensor, b: th.Tensor, mask: th.Tensor | None = None) -> th.Tensor:  # noqa: D102
        return l2_row_roots(w, b, mask, 2.0 * self.reg)


class Entropic(Regularizer):
    """Relative entropy to the product measure :math:`a b^\\top` (Cuturi 2013)."""

    name = "entropic"

    def conjugate(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * th.expm1(z / self.reg)

    def density(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return (z / self.reg).exp_()  # one temporary (autograd-safe)

    def inverse_density(self, h: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * th.log(h)

    def curvature(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.exp(z / self.reg) / self.reg

    def primal(self, density: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * (th.xlogy(density, density) - density + 1.0)

    def density_(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return z.div_(self.reg).exp_()

    def penalty_sums(self, tz: float, total: float, support_mass: float) -> tuple[float, float]:  # noqa: D102
        # log H = z / eps: eps (H log H - H + 1) sums to tz - eps (total - mass), eps (H - 1) to eps (total - mass).
        dual = self.reg * (total - support_mass)
        return tz - dual, dual

    def row_potential(self, w: th.Tensor, b: th.Tensor, mask: th.Tensor | None = None) -> th.Tensor:  # noqa: D102
        logits = th.log(b)[None, :] - w / self.reg
        if mask is not None:
            logits = logits.masked_fill(~mask, -float("inf"))
        return -self.reg * th.logsumexp(logits, dim=1)


_SORT_MAX_COLUMNS = 256  # up to this many columns a full sort; beyond, Newton's method (host syncs, fewer passes)


def l2_row_roots(thresholds: th.Tensor, w: th.Tensor, active: th.Tensor | None, target: float) -> th.Tensor:
    """Solve ``sum_j w_j (s - t_j)_+ = target`` for ``s`` on each row.

    Only the smallest thresholds matter when few pairs are active, so a partial sort (``topk``) of 64 is
    tried first; rows whose solution lies beyond it are retried with four times as many. Rows beyond a quarter
    of the columns get a full sort up to 256 columns (no host synchronisation, which OTPR's acting path needs),
    and beyond that Newton's method (:func:`_newton_roots`: a few mat-vec products where a full sort of every row
    costs several top-k passes, at one host synchronisation per step), with a full sort for any row it leaves
    unsettled.
    """
    inf = th.tensor(float("inf"), dtype=thresholds.dtype, device=thresholds.device)
    t = thresholds if active is None else th.where(active, thresholds, inf)
    m = t.shape[1]
    wt = w[None, :].expand_as(t)
    sol = th.empty(t.shape[0], dtype=t.dtype, device=t.device)
    rows: th.Tensor | None = None  # None: every row
    k = 64
    while k < m // 4:
        tr = t if rows is None else t[rows]
        ts, order = th.topk(tr, k + 1, dim=1, largest=False, sorted=True)
        wr = wt if rows is None else wt[rows]
        part, ok = _breakpoint_solution(ts[:, :k], th.gather(wr, 1, order[:, :k]), ts[:, k], target)
        if rows is None:
            sol = part
            rows = th.nonzero(~ok).flatten()
        else:
            sol[rows] = part
            rows = rows[~ok]
        if rows.numel() == 0:
            return sol
        k *= 4
    tr = t if rows is None else t[rows]
    if m <= _SORT_MAX_COLUMNS:  # a full sort: no host synchronisation (acting computes u(s) this way, every step)
        part = _breakpoint_solution(*_sorted_rows(tr, w), None, target)[0]
    else:
        part, ok = _newton_roots(tr, w, target)
        if not bool(ok.all()):  # rare: more breakpoints crossed than Newton's budget; a full sort settles them
            left = th.nonzero(~ok).flatten()
            part[left] = _breakpoint_solution(*_sorted_rows(tr[left], w), None, target)[0]
    if rows is None:
        return part
    sol[rows] = part
    return sol


def _sorted_rows(t: th.Tensor, w: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Each row of ``t`` sorted, and the column weights ``w`` in that order.

    On the CPU, outside autograd, in float32 or float64, numpy sorts: ``torch.sort`` took 3 ms on 256 x 256 here,
    numpy's ``argsort`` 0.7-0.8 ms and its ``sort`` (values only, enough when the weights are equal) 0.2-0.3 ms
    (``benchmarks/test_bench_neural_ot.py::test_l2_row_sort``). The sorted values are the same.
    """
    numpy_dtypes = (th.float32, th.float64)  # not bfloat16 (OTPR's pairs on CPUs with bfloat16 matrix instructions)
    if (
        t.device.type != "cpu"
        or t.dtype not in numpy_dtypes
        or w.dtype not in numpy_dtypes
        or ((t.requires_grad or w.requires_grad) and th.is_grad_enabled())
    ):
        ts, order = th.sort(t, dim=1)
        return ts, th.gather(w[None, :].expand_as(t), 1, order)
    tn, wn = t.detach().numpy(), w.detach().numpy()  # views: on the CPU nothing waits (no torch host conversion)
    if (wn == wn[0]).all():
        return th.from_numpy(np.sort(tn, axis=1)), w[None, :].expand_as(t)
    idx = np.argsort(tn, axis=1)
    return th.from_numpy(np.take_along_axis(tn, idx, axis=1)), th.from_numpy(wn[idx])


def _newton_roots(t: th.Tensor, w: th.Tensor, target: float, max_iter: int = 30) -> tuple[th.Tensor, th.Tensor]:
    """Newton's method from above on each row of ``s -> sum_j w_j (s - t_j)_+ - target`` (``t_j = inf``: absent).

    The function is convex, increasing and piecewise linear, so Newton from an upper bound decreases
    monotonically and lands on the root as soon as its active set ``{t_j < s}`` is the root's: each step is
    the breakpoint formula ``(target + sum_act w t) / sum_act w`` on the current set, and a step that changes
    nothing is the root (exact, as the sorted solution). The start, that formula on every finite
    threshold, is an upper bound: the all-active linearisation lies below the function. Two mat-vec
    products per step instead of a sort per row; returns the roots and which rows converged.
    """
    finite = th.isfinite(t)
    tz = th.where(finite, t, 0.0)
    # One float and one boolean matrix for every step: fresh (n, m) tensors at each step cost page faults.
    act, act_t = finite, th.empty_like(t)
    s = (target + tz @ w) / act_t.copy_(finite).matmul(w).clamp_min(th.finfo(t.dtype).tiny)
    ok = th.zeros_like(s, dtype=th.bool)
    for _ in range(max_iter):
        act = th.lt(t, s[:, None], out=act)
        cw = act_t.copy_(act) @ w
        nxt = (target + act_t.mul_(tz) @ w) / cw.clamp_min(th.finfo(t.dtype).tiny)  # tz: t where active, else 0
        ok = nxt >= s
        s = th.minimum(nxt, s)
        if bool(ok.all()):
            break
    return s, ok


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


_REGULARIZERS: dict[str, type[Regularizer]] = {"l2": SquaredL2, "entropic": Entropic}


def get_regularizer(reg: float, reg_type: str = "l2") -> Regularizer:
    """Build the regulariser named by ``reg_type`` (``"l2"`` or ``"entropic"``).

    Parameters
    ----------
    reg : float
        Regularisation strength, positive.
    reg_type : str
        ``"l2"`` or ``"entropic"`` (``"kl"`` is accepted as an alias of ``"entropic"``).

    Returns
    -------
    Regularizer
    """
    if reg_type == "L2":
        raise ValueError(
            "`reg_type` 'L2' is POT's ot.solve convention, (reg / 2) * ||T||^2 on plan entries, a different problem "
            "from neural_ot's 'l2', the paper's density-based reg * sum T_ij^2 / (a_i b_j); with uniform weights "
            "POT's reg r is neural_ot's reg = r / (2 n m). Pass reg_type='l2' with the converted reg"
        )
    key = {"kl": "entropic"}.get(str(reg_type).lower(), str(reg_type).lower())
    if key not in _REGULARIZERS:
        raise ValueError(f"`reg_type` must be one of {sorted(_REGULARIZERS)}, got {reg_type!r}")
    return _REGULARIZERS[key](reg)
