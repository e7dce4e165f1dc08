"""The measures of a stochastic dual problem and the minibatches drawn from them.

A :class:`Measure` is one side of the problem: a :class:`~neural_ot.sources.Source` for the regular points
plus, optionally, matched keypoints that join every minibatch with their own mass (the paper's Algorithm 2).
:func:`build_measures` validates the user's data into two measures; :func:`draw_minibatch` draws a
:class:`Minibatch` (keypoints first, weights summing to 1 on each side, the keypoint mask when there are
keypoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th

from neural_ot._arrays import ArrayLike, to_tensor
from neural_ot._validation import check_weights
from neural_ot.keypoints import check_pairs, keypoint_mask_tensor
from neural_ot.sources import PointSource, Source, as_source


@dataclass
class Minibatch:
    """One minibatch of a stochastic dual problem (keypoints first, when there are any).

    Attributes
    ----------
    x_idx, y_idx : torch.Tensor or None
        Indices into finite point sets (``None`` for sampled data).
    x, y : torch.Tensor
        The points.
    wx, wy : torch.Tensor
        Their weights (each sums to 1: keypoints carry their share, the other points the rest).
    mask : torch.Tensor or None
        The keypoint mask of this minibatch (``None`` without keypoints).
    n_keypoints : int
        Number of matched keypoint pairs at the head of ``x`` and ``y``.
    """

    x_idx: th.Tensor | None
    x: th.Tensor
    y_idx: th.Tensor | None
    y: th.Tensor
    wx: th.Tensor
    wy: th.Tensor
    mask: th.Tensor | None
    n_keypoints: int = 0

    def regular(self) -> Minibatch:
        """Return the minibatch without its keypoints (the block of the masked problem that neural potentials solve)."""
        K = self.n_keypoints
        if K == 0:
            return self
        return Minibatch(
            None if self.x_idx is None else self.x_idx[K:],
            self.x[K:],
            None if self.y_idx is None else self.y_idx[K:],
            self.y[K:],
            self.wx[K:],
            self.wy[K:],
            None,
        )


class Measure:
    """One side of the problem: keypoints (always in the batch) plus a source for the rest of the mass.

    Parameters
    ----------
    rest : Source
        The regular points.
    kp_idx : torch.Tensor, optional
        Indices of the keypoints in a finite ``rest`` (``pairs``), else ``None``.
    kp_pts, kp_w : torch.Tensor, optional
        The keypoints and their weights.
    """

    def __init__(
        self,
        rest: Source,
        kp_idx: th.Tensor | None = None,
        kp_pts: th.Tensor | None = None,
        kp_w: th.Tensor | None = None,
    ) -> None:
        self.rest, self.kp_idx, self.kp_pts, self.kp_w = rest, kp_idx, kp_pts, kp_w
        self.rest_mass = 1.0 - (float(kp_w.sum()) if kp_w is not None else 0.0)

    @property
    def n_keypoints(self) -> int:
        """Number of keypoints (0 without)."""
        return 0 if self.kp_pts is None else self.kp_pts.shape[0]

    def draw(
        self, batch_size: int, gen: th.Generator, device: th.device, dtype: th.dtype
    ) -> tuple[th.Tensor | None, th.Tensor, th.Tensor]:
        """Draw ``(indices, points, weights)``: the keypoints, then ``batch_size`` regular points."""
        idx, pts = self.rest.sample(batch_size, gen)
        pts = pts.to(device=device, dtype=dtype)
        w = th.full((batch_size,), self.rest_mass / batch_size, device=device, dtype=dtype)
        if self.kp_pts is None:
            return (None if idx is None else idx.to(device)), pts, w
        assert self.kp_w is not None
        pts = th.cat([self.kp_pts.to(device=device, dtype=dtype), pts])
        w = th.cat([self.kp_w.to(device=device, dtype=dtype), w])
        if idx is not None and self.kp_idx is not None:
            idx = th.cat([self.kp_idx.to(idx.device), idx]).to(device)
        return idx, pts, w


def draw_minibatch(
    mx: Measure, my: Measure, batch_size: int, gen: th.Generator, device: th.device, dtype: th.dtype
) -> Minibatch:
    """Draw a minibatch of ``batch_size`` regular points per side (keypoints on top, masked when present)."""
    xi, x, wx = mx.draw(batch_size, gen, device, dtype)
    yi, y, wy = my.draw(batch_size, gen, device, dtype)
    K = mx.n_keypoints
    mask = None
    if K:
        idx = th.arange(K, device=device)  # keypoints come first, matched in order
        mask = keypoint_mask_tensor(K + batch_size, K + batch_size, idx, idx, device, dtype)
    return Minibatch(xi, x, yi, y, wx, wy, mask, K)


def build_measures(
    x: Any,
    y: Any,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    pairs: ArrayLike | None = None,
    keypoints: tuple[ArrayLike, ArrayLike] | None = None,
    keypoint_mass: float | None = None,
    dtype: th.dtype = th.float32,
    tabular: bool = False,
) -> tuple[Measure, Measure]:
    """Validate a problem's data into its two measures (the arguments of :meth:`StochasticDual.fit`).

    Parameters
    ----------
    x, y, a, b, pairs, keypoints, keypoint_mass
        As in :meth:`~neural_ot.StochasticDual.fit`.
    dtype : torch.dtype
        Dtype of finite point sets.
    tabular : bool
        The potentials are tabular: extra ``keypoints`` have no entry and are refused.

    Returns
    -------
    (Measure, Measure)
    """
    if pairs is not None and keypoints is not None:
        raise ValueError("give either `pairs` (indices into x and y) or `keypoints` (extra points), not both")
    xs = _source(x, a, "x", "a", dtype)
    ys = _source(y, b, "y", "b", dtype)
    if pairs is not None:
        return _measures_from_pairs(xs, ys, pairs)
    if keypoints is not None:
        if tabular:
            raise ValueError("with tabular potentials, keypoints must be part of x and y: pass `pairs`")
        return _measures_from_keypoints(xs, ys, keypoints, keypoint_mass, dtype)
    return Measure(xs), Measure(ys)


def _source(data: Any, weights: ArrayLike | None, name: str, wname: str, dtype: th.dtype) -> Source:
    if isinstance(data, np.ndarray | th.Tensor | list):
        pts = to_tensor(data, name, dtype=dtype)
        w = None
        if weights is not None:
            w = to_tensor(weights, wname, dtype=th.float64)
            check_weights(w, pts.shape[0], wname, what=f"`{name}` has")
        return PointSource(pts, w)
    if weights is not None:
        raise ValueError(f"`{wname}` applies only when `{name}` is a finite set of points")
    return as_source(data, name)


def _measures_from_pairs(xs: Source, ys: Source, pairs: ArrayLike) -> tuple[Measure, Measure]:
    if not (isinstance(xs, PointSource) and isinstance(ys, PointSource)):
        raise ValueError("`pairs` index into finite point sets: pass tensors for x and y")
    assert xs.size is not None and ys.size is not None
    pr = th.as_tensor(check_pairs(pairs, xs.size, ys.size))
    if pr.shape[0] == 0:
        raise ValueError("`pairs` is empty")
    wx = xs.weights if xs.weights is not None else th.full((xs.size,), 1.0 / xs.size, dtype=th.float64)
    wy = ys.weights if ys.weights is not None else th.full((ys.size,), 1.0 / ys.size, dtype=th.float64)
    kx, ky = wx[pr[:, 0]], wy[pr[:, 1]]
    if not th.allclose(kx, ky, rtol=1e-6, atol=0):
        raise ValueError("matched keypoints must carry equal mass on both sides (weights of `pairs` differ)")
    rest_x, rest_y = wx.clone(), wy.clone()
    rest_x[pr[:, 0]] = 0
    rest_y[pr[:, 1]] = 0
    if float(rest_x.sum()) <= 0 or float(rest_y.sum()) <= 0:
        raise ValueError("every point is a keypoint: nothing is left to transport by the solver")
    mx = Measure(PointSource(xs.points, rest_x), pr[:, 0], xs.points[pr[:, 0]], kx)
    my = Measure(PointSource(ys.points, rest_y), pr[:, 1], ys.points[pr[:, 1]], kx)
    return mx, my


def _measures_from_keypoints(
    xs: Source, ys: Source, keypoints: tuple[ArrayLike, ArrayLike], keypoint_mass: float | None, dtype: th.dtype
) -> tuple[Measure, Measure]:
    kx = to_tensor(keypoints[0], "keypoints[0]", dtype=dtype)
    ky = to_tensor(keypoints[1], "keypoints[1]", dtype=dtype)
    kx = kx[:, None] if kx.ndim == 1 else kx
    ky = ky[:, None] if ky.ndim == 1 else ky
    K = kx.shape[0]
    if K == 0 or ky.shape[0] != K:
        raise ValueError(f"`keypoints` must be two arrays with the same positive number of rows, got {K} and {ky.shape[0]}")
    if kx.shape[1] != xs.dim or ky.shape[1] != ys.dim:
        raise ValueError(f"`keypoints` have dimensions {kx.shape[1]}, {ky.shape[1]}; the data have {xs.dim}, {ys.dim}")
    if keypoint_mass is None:
        if xs.size is None or ys.size is None:
            raise ValueError("with sampled data, give `keypoint_mass` (the share of mass on the keypoints)")
        keypoint_mass = K / (min(xs.size, ys.size) + K)
    if not 0.0 < keypoint_mass < 1.0:
        raise ValueError(f"`keypoint_mass` must be in (0, 1), got {keypoint_mass!r}")
    w = th.full((K,), keypoint_mass / K, dtype=th.float64)
    return Measure(xs, None, kx, w), Measure(ys, None, ky, w)
