r"""The compatibility function :math:`H(x, y)` on new points (the paper's Eq. 6 and 15).

Given neural potentials ``u``, ``v``, a cost and :math:`\varepsilon`, :class:`Compatibility` evaluates
:math:`H(x, y) = (u(x) + v(y) - c(x, y))_+ / (2\varepsilon)` in batches, resamples one candidate per
condition with probability proportional to :math:`H` (the paper's Algorithm 1) and computes the
barycentric projection :math:`\hat y(x) = \int y H(x, y) d\nu(y) / \int H(x, y) d\nu(y)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from torch import nn

from neural_ot._arrays import ArrayLike, is_numpy, result_dtype, to_output, to_tensor
from neural_ot._validation import check_on_device
from neural_ot.costs import CostFn
from neural_ot.potentials import TabularPotential
from neural_ot.regularizers import get_regularizer


@dataclass(frozen=True)
class Resampled:
    """Outcome of :meth:`Compatibility.resample`.

    Attributes
    ----------
    index : torch.Tensor of shape (n,)
        Chosen candidate per condition.
    probs : torch.Tensor of shape (n, L)
        Selection probabilities ``H / sum(H)`` (one-hot on the fallback choice where every H is zero).
    density : torch.Tensor of shape (n, L)
        The compatibility values of the candidates.
    fallback : torch.Tensor of shape (n,)
        ``True`` where every candidate had ``H = 0`` and the fallback rule chose.
    """

    index: th.Tensor
    probs: th.Tensor
    density: th.Tensor
    fallback: th.Tensor


class Compatibility:
    """Compatibility function built from trained potentials.

    Parameters
    ----------
    u, v : torch.nn.Module
        Neural potentials on source and target points.
    cost : CostFn
        Ground cost, normalised as during training (its scale is frozen).
    reg : float
        :math:`\\varepsilon`.
    reg_type : {"l2", "entropic"}
    chunk_size : int
        Rows evaluated at a time by :meth:`__call__`.
    keypoints : (torch.Tensor (K, d), torch.Tensor (K, d'), torch.Tensor (K,)), optional
        The matched keypoint pairs of a masked problem and the mass each carries. Under the keypoint mask a
        keypoint's row and column hold only its own pair, which carries its whole mass: wherever ``x`` is a
        keypoint source or ``y`` a keypoint target, ``H`` is ``1 / w_k`` on the matched pair and 0 elsewhere,
        whatever the potentials say (they are trained on the other points).
    """

    def __init__(
        self,
        u: nn.Module,
        v: nn.Module,
        cost: CostFn,
        reg: float,
        reg_type: str = "l2",
        chunk_size: int = 4096,
        keypoints: tuple[th.Tensor, th.Tensor, th.Tensor] | None = None,
    ) -> None:
        if isinstance(u, TabularPotential) or isinstance(v, TabularPotential):
            raise TypeError(
                "Compatibility needs neural potentials to evaluate new points; with tabular potentials use "
                "neural_ot.density on the support (DualResult.potential_values gives u and v there)"
            )
        self.u, self.v, self.cost = u, v, cost
        self.regularizer = get_regularizer(reg, reg_type)
        self.chunk_size = chunk_size
        self.keypoints = None
        if keypoints is not None:
            device, dtype = self._device_dtype()
            kx, ky, kw = (th.as_tensor(t, device=device, dtype=dtype) for t in keypoints)
            if not (kx.shape[0] == ky.shape[0] == kw.shape[0]) or not bool((kw > 0).all()):
                raise ValueError("`keypoints` must be (x_k, y_k, w_k) with K rows each and positive masses w_k")
            self.keypoints = (kx.reshape(len(kx), -1), ky.reshape(len(ky), -1), kw)

    def _keypoint_index(self, pts: th.Tensor, side: int) -> th.Tensor:
        """For each point, the index of the keypoint it is (on side 0: sources, 1: targets), or -1."""
        assert self.keypoints is not None
        same = (pts.reshape(len(pts), -1)[:, None, :] == self.keypoints[side][None, :, :]).all(-1)
        return th.where(same.any(1), same.float().argmax(1), -1)

    def _masked(self, H: th.Tensor, rows: th.Tensor, cols: th.Tensor) -> th.Tensor:
        """Apply the keypoint mask to ``H``, given the keypoint index of each row and column (broadcastable)."""
        assert self.keypoints is not None
        inv_w = 1.0 / self.keypoints[2]
        pair = (rows >= 0) & (rows == cols)
        return th.where(pair, inv_w[rows.clamp_min(0)], th.where((rows >= 0) | (cols >= 0), th.zeros_like(H), H))

    @property
    def reg(self) -> float:
        """Regularisation strength."""
        return self.regularizer.reg

    def _device_dtype(self) -> tuple[th.device, th.dtype]:
        p = next(self.u.parameters())
        return p.device, p.dtype

    def _tensor(self, x: ArrayLike, name: str) -> th.Tensor:
        device, dtype = self._device_dtype()
        t = to_tensor(x, name, dtype=dtype, device=device)
        check_on_device(th.isfinite(t).all(), f"`{name}` contains NaN or infinite values")
        return t[:, None] if t.ndim == 1 else t

    @th.no_grad()
    def z(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """``u(x_i) + v(y_j) - c(x_i, y_j)`` for all pairs, shape ``(n, m)``."""
        return self.u(x)[:, None] + self.v(y)[None, :] - self.cost.matrix(x, y)

    @th.no_grad()
    def __call__(self, x: ArrayLike, y: ArrayLike) -> ArrayLike:
        """Matrix ``H(x_i, y_j)`` of shape ``(n, m)``; numpy in, numpy out."""
        xt, yt = self._tensor(x, "x"), self._tensor(y, "y")
        H = th.cat(
            [self.regularizer.density(self.z(xt[i : i + self.chunk_size], yt)) for i in range(0, len(xt), self.chunk_size)]
        )
        if self.keypoints is not None:
            H = self._masked(H, self._keypoint_index(xt, 0)[:, None], self._keypoint_index(yt, 1)[None, :])
        return to_output(H, is_numpy(x), result_dtype(x, y)) if is_numpy(x) else H

    @th.no_grad()
    def paired(self, x: ArrayLike, y: ArrayLike) -> ArrayLike:
        """``H(x_i, y_i)`` for aligned rows, shape ``(n,)``."""
        xt, yt = self._tensor(x, "x"), self._tensor(y, "y")
        if xt.shape[0] != yt.shape[0]:
            raise ValueError(f"`x` and `y` must have the same number of rows, got {xt.shape[0]} and {yt.shape[0]}")
        H = self.regularizer.density(self.u(xt) + self.v(yt) - self.cost.paired_matrix(xt, yt))
        if self.keypoints is not None:
            H = self._masked(H, self._keypoint_index(xt, 0), self._keypoint_index(yt, 1))
        return to_output(H, True, result_dtype(x, y)) if is_numpy(x) else H

    @th.no_grad()
    def resample(self, x: ArrayLike, candidates: ArrayLike, generator: th.Generator | None = None) -> Resampled:
        """Pick one of ``L`` candidates per condition with probability proportional to ``H`` (Algorithm 1).

        Parameters
        ----------
        x : array-like of shape (n, d)
            Conditions (states); numpy arrays are accepted as in ``H(x, y)``.
        candidates : array-like of shape (n, L, d')
            Candidate targets (actions) for each condition.
        generator : torch.Generator, optional
            For reproducible draws.

        Returns
        -------
        Resampled

        Notes
        -----
        Fallback: when every candidate of a condition has ``H = 0`` (all pairs outside the plan's support),
        the candidate with the largest ``u(x) + v(y) - c(x, y)``, the one closest to being transported, is
        taken deterministically. The ``fallback`` flags report where this happened.
        """
        device, dtype = self._device_dtype()
        x = self._tensor(x, "x")
        candidates = to_tensor(candidates, "candidates", dtype=dtype, device=device)
        if candidates.ndim != 3 or candidates.shape[0] != x.shape[0]:
            raise ValueError(f"`candidates` must have shape (n, L, d) with n={x.shape[0]}, got {tuple(candidates.shape)}")
        n, L, d = candidates.shape
        xr = x.repeat_interleave(L, dim=0)
        yr = candidates.reshape(n * L, d)
        z = (self.u(xr) + self.v(yr) - self.cost.paired_matrix(xr, yr)).reshape(n, L)
        H = self.regularizer.density(z)
        if self.keypoints is not None:
            H = self._masked(H, self._keypoint_index(x, 0)[:, None], self._keypoint_index(yr, 1).reshape(n, L))
        return resample_from_scores(z, H, generator)

    @th.no_grad()
    def barycentric_projection(self, x: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> ArrayLike:
        """Barycentric projection of ``x`` onto the target sample ``y`` with weights ``b`` (uniform by default).

        Rows of ``x`` with zero total compatibility get NaN-free output: the target mean.
        """
        xt, yt = self._tensor(x, "x"), self._tensor(y, "y")
        bt = (
            th.full((yt.shape[0],), 1.0 / yt.shape[0], dtype=yt.dtype, device=yt.device)
            if b is None
            else self._tensor(b, "b").reshape(-1)
        )
        H = self(xt, yt)
        assert isinstance(H, th.Tensor)
        Wt = H * bt[None, :]
        mass = Wt.sum(1, keepdim=True)
        proj = th.where(mass > 0, (Wt @ yt) / mass.clamp_min(th.finfo(yt.dtype).tiny), (bt @ yt)[None, :])
        return to_output(proj, True, result_dtype(x, y)) if is_numpy(x) else proj


def resample_from_scores(z: th.Tensor, H: th.Tensor, generator: th.Generator | None = None) -> Resampled:
    """Categorical draw per row with probabilities ``H / H.sum()``; argmax of ``z`` where all ``H`` are 0.

    Parameters
    ----------
    z : torch.Tensor of shape (n, L)
        ``u + v - c`` for each candidate (used only by the fallback).
    H : torch.Tensor of shape (n, L)
        Non-negative compatibility values.
    generator : torch.Generator, optional

    Returns
    -------
    Resampled
    """
    message = "compatibility values are NaN or infinite; check the potentials and the cost scale"
    check_on_device(th.isfinite(H).all(), message, FloatingPointError)
    total = H.sum(1, keepdim=True)
    fallback = total.squeeze(1) <= 0
    best = z.argmax(1)
    probs = th.where(
        total > 0, H / total.clamp_min(th.finfo(H.dtype).tiny), th.nn.functional.one_hot(best, H.shape[1]).to(H.dtype)
    )
    if generator is None or generator.device == H.device:
        index = th.multinomial(probs, 1, generator=generator).squeeze(1)
    else:  # a CPU generator for data on another device: draw on the CPU
        index = th.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(H.device)
    return Resampled(index=index, probs=probs, density=H, fallback=fallback)
