r"""Keypoint guidance for OT (KPG, Gu et al. 2022; the paper's Sec. 4.3).

Matched keypoint pairs :math:`(i_k, j_k)` are enforced by a 0/1 mask (:func:`keypoint_mask`) and the
other points are transported so as to preserve their *relation* to the keypoints: with
:math:`R_x = \mathrm{softmax}_k(-c(x, x_k)/\rho)` and :math:`R_y` likewise, the relation cost is
:math:`g(x, y) = \mathrm{JS}(R_x, R_y)` (Eq. 13, :class:`KeypointRelationCost`).
"""

from __future__ import annotations

import math

import numpy as np
import torch as th

from neural_ot._arrays import ArrayLike, is_numpy, to_output, to_tensor
from neural_ot._validation import check_on_device
from neural_ot.costs import CostFn, SqEuclidean


def _as_pairs(pairs: ArrayLike, name: str = "pairs") -> np.ndarray:
    arr = pairs.detach().cpu().numpy() if isinstance(pairs, th.Tensor) else np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"`{name}` must have shape (K, 2) of (source index, target index), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise TypeError(f"`{name}` must contain integer indices")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64)


def check_pairs(pairs: ArrayLike, n: int, m: int, name: str = "pairs") -> np.ndarray:
    """Validate keypoint index pairs against a problem of size ``n x m``.

    Returns
    -------
    numpy.ndarray
        The pairs as an int64 array of shape ``(K, 2)``.
    """
    arr = _as_pairs(pairs, name)
    if arr.shape[0] == 0:
        return arr
    for col, size, side in ((0, n, "source"), (1, m, "target")):
        idx = arr[:, col]
        bad = idx[(idx < 0) | (idx >= size)]
        if bad.size:
            raise ValueError(f"`{name}` has {side} index {int(bad[0])} out of range [0, {size})")
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"`{name}` repeats {side} index {int(uniq[counts > 1][0])}: each keypoint is matched once")
    return arr


def keypoint_mask(n: int, m: int, pairs: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """Keypoint mask of KPG: ones, except keypoint rows and columns, which are one only at their match.

    Parameters
    ----------
    n, m : int
        Numbers of source and target points.
    pairs : array-like of shape (K, 2)
        Matched keypoints ``(i_k, j_k)``; indices must be in range and not repeated on either side.
    dtype : numpy dtype
        Dtype of the returned mask.

    Returns
    -------
    numpy.ndarray of shape (n, m)
        The 0/1 mask.
    """
    if int(n) < 1 or int(m) < 1:
        raise ValueError(f"`n` and `m` must be positive, got {n} and {m}")
    arr = th.as_tensor(check_pairs(pairs, int(n), int(m)))
    # Built directly in the requested dtype (torch's equivalent of it): no float64 copy of an n x m mask.
    tdtype = th.from_numpy(np.zeros(0, dtype=dtype)).dtype
    return keypoint_mask_tensor(int(n), int(m), arr[:, 0], arr[:, 1], th.device("cpu"), tdtype).numpy()


def keypoint_mask_tensor(
    n: int, m: int, rows: th.Tensor, cols: th.Tensor, device: th.device | str, dtype: th.dtype
) -> th.Tensor:
    """:func:`keypoint_mask` as a tensor, for validated keypoint ``rows`` and matching ``cols``."""
    mask = th.ones((n, m), device=device, dtype=dtype)
    mask[rows, :] = 0
    mask[:, cols] = 0
    mask[rows, cols] = 1
    return mask


def relation_vectors(C_keypoints: ArrayLike, rho: float = 0.1) -> ArrayLike:
    """Relation of each point to the keypoints: a row-wise softmax of ``-C_keypoints / rho`` (Eq. 13).

    The softmax subtracts each row's maximum, so it is stable for any cost scale and temperature.

    Parameters
    ----------
    C_keypoints : array-like of shape (n, K)
        Costs from each point to each keypoint (same space).
    rho : float
        Temperature, positive.

    Returns
    -------
    array of shape (n, K)
        Rows on the probability simplex.
    """
    if not rho > 0:
        raise ValueError(f"`rho` must be positive, got {rho!r}")
    C = to_tensor(C_keypoints, "C_keypoints")
    if C.ndim != 2 or C.shape[1] == 0:
        raise ValueError(f"`C_keypoints` must have shape (n, K) with K >= 1, got {tuple(C.shape)}")
    R = th.softmax(-C / rho, dim=1)
    return to_output(R, True, R.dtype) if is_numpy(C_keypoints) else R


def js_divergence_matrix(P: ArrayLike, Q: ArrayLike, chunk_size: int | None = None) -> ArrayLike:
    r"""Jensen-Shannon divergences between every row of ``P`` and every row of ``Q``.

    :math:`\mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \| \tfrac{p+q}{2}) + \tfrac12 \mathrm{KL}(q \| \tfrac{p+q}{2})`,
    in nats, in :math:`[0, \log 2]`. The mixed term cannot be factored; it is accumulated one keypoint
    coordinate at a time into the ``(n, m)`` result, so temporaries have the size of the output (or of a
    ``chunk_size x m`` block), never ``n x m x K``.

    Parameters
    ----------
    P : array-like of shape (n, K)
    Q : array-like of shape (m, K)
        Rows are probability vectors.
    chunk_size : int, optional
        Rows per chunk (bounds the temporaries to ``chunk_size x m``); all rows at once when ``None``.

    Returns
    -------
    array of shape (n, m)
    """
    Pt, Qt = to_tensor(P, "P"), to_tensor(Q, "Q")
    Qt = Qt.to(dtype=Pt.dtype, device=Pt.device)
    if Pt.ndim != 2 or Qt.ndim != 2 or Pt.shape[1] != Qt.shape[1]:
        raise ValueError(f"`P` and `Q` must be (n, K) and (m, K), got {tuple(Pt.shape)} and {tuple(Qt.shape)}")
    # Negative or NaN entries made NaN divergences (log of a negative mixture).
    check_on_device((Pt >= 0).all() & (Qt >= 0).all(), "`P` and `Q` must hold probability vectors (entries >= 0)")
    n = Pt.shape[0]
    m = Qt.shape[0]
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be a positive int or None, got {chunk_size!r}")
    chunk_size = n if chunk_size is None else chunk_size
    out = th.empty((n, m), dtype=Pt.dtype, device=Pt.device)
    for i in range(0, n, max(chunk_size, 1)):
        out[i : i + chunk_size] = _js(Pt[i : i + chunk_size], Qt, outer=True)
    return to_output(out, True, out.dtype) if (is_numpy(P) and is_numpy(Q)) else out


_BROADCAST_LIMIT = 1 << 18  # elements of an (n, m, K) temporary (1 MiB in float32) below which it is built


def _js(P: th.Tensor, Q: th.Tensor, outer: bool) -> th.Tensor:
    """JS divergences between all rows of ``P`` and ``Q`` (``outer``) or between aligned rows.

    The mixed term is accumulated one coordinate at a time, so temporaries have the size of the result.
    """
    hp, hq = th.xlogy(P, P).sum(1), th.xlogy(Q, Q).sum(1)  # 0 log 0 = 0
    out = (hp[:, None] + hq[None, :]) if outer else (hp + hq)
    if out.numel() * P.shape[1] <= _BROADCAST_LIMIT:
        # Small problems: one broadcast pass costs less than a loop of K small operations.
        mid = 0.5 * ((P[:, None, :] + Q[None, :, :]) if outer else (P + Q))
        return (0.5 * out - th.xlogy(mid, mid).sum(-1)).clamp_(0.0, math.log(2.0))
    out.mul_(0.5)
    mid, term = th.empty_like(out), th.empty_like(out)  # two buffers reused for every coordinate
    for k in range(P.shape[1]):
        if outer:
            th.add(P[:, k, None], Q[None, :, k], out=mid)
        else:
            th.add(P[:, k], Q[:, k], out=mid)
        mid.mul_(0.5)
        out.sub_(th.xlogy(mid, mid, out=term))
    return out.clamp_(0.0, math.log(2.0))


class KeypointRelationCost(CostFn):
    """Jensen-Shannon cost between relation vectors to matched keypoints (KPG, the paper's ``g``).

    Parameters
    ----------
    keypoints_x : array-like of shape (K, d)
        Source keypoints :math:`x_k`.
    keypoints_y : array-like of shape (K, d')
        Their matched targets :math:`y_k`, in the same order.
    rho : float
        Softmax temperature, relative to the normalised within-space costs (0.1 as in KPG).
    source_cost, target_cost : CostFn
        Within-space costs :math:`c(x, x_k)` and :math:`c(y, y_k)`; squared Euclidean by default.
    normalize, chunk_size
        As in :class:`~neural_ot.costs.CostFn`; the JS cost already lies in ``[0, log 2]``.

    Notes
    -----
    The within-space costs are divided by the largest keypoint-to-keypoint cost in that space, a scale
    fixed at construction, so the relation of a point does not depend on which minibatch it is in.
    """

    def __init__(
        self,
        keypoints_x: ArrayLike,
        keypoints_y: ArrayLike,
        rho: float = 0.1,
        source_cost: CostFn | None = None,
        target_cost: CostFn | None = None,
        normalize: float | str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(normalize=normalize, chunk_size=chunk_size)  # type: ignore[arg-type]
        if not rho > 0:
            raise ValueError(f"`rho` must be positive, got {rho!r}")
        kx, ky = to_tensor(keypoints_x, "keypoints_x"), to_tensor(keypoints_y, "keypoints_y")
        kx = kx[:, None] if kx.ndim == 1 else kx
        ky = ky[:, None] if ky.ndim == 1 else ky
        if kx.shape[0] != ky.shape[0] or kx.shape[0] == 0:
            raise ValueError(
                f"`keypoints_x` and `keypoints_y` must hold the same positive number of points, "
                f"got {kx.shape[0]} and {ky.shape[0]}"
            )
        self.keypoints_x, self.keypoints_y = kx, ky
        self.rho = float(rho)
        for name, c in (("source_cost", source_cost), ("target_cost", target_cost)):
            if c is not None and c.normalize is not None:
                raise ValueError(
                    f"`{name}` has normalize={c.normalize!r}, which the relation vectors would ignore: they divide "
                    "by the largest keypoint-to-keypoint cost; pass the cost without `normalize`"
                )
        self.source_cost = source_cost or SqEuclidean()
        self.target_cost = target_cost or SqEuclidean()
        self._scale_x = self._keypoint_scale(self.source_cost, kx)
        self._scale_y = self._keypoint_scale(self.target_cost, ky)

    @staticmethod
    def _keypoint_scale(cost: CostFn, k: th.Tensor) -> float:
        s = float(cost.pairwise(k, k).abs().max()) if k.shape[0] > 1 else 0.0
        return s if s > 0 else 1.0

    def check_dims(self, dx: int, dy: int) -> None:  # noqa: D102
        for side, d, k, cost in (("x", dx, self.keypoints_x, self.source_cost), ("y", dy, self.keypoints_y, self.target_cost)):
            try:
                cost.check_dims(d, k.shape[1])
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}: `{side}` against `keypoints_{side}`: {e}") from e

    def relations(self, z: th.Tensor, side: str) -> th.Tensor:
        """Relation vectors ``(n, K)`` of points ``z`` on ``side`` (``"source"`` or ``"target"``)."""
        if side == "source":
            cost, k, scale = self.source_cost, self.keypoints_x, self._scale_x
        else:
            cost, k, scale = self.target_cost, self.keypoints_y, self._scale_y
        R = relation_vectors(cost.pairwise(z, k.to(dtype=z.dtype, device=z.device)) / scale, self.rho)
        assert isinstance(R, th.Tensor)
        return R

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        out = js_divergence_matrix(self.relations(x, "source"), self.relations(y, "target"))
        assert isinstance(out, th.Tensor)
        return out

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return _js(self.relations(x, "source"), self.relations(y, "target"), outer=False)


class MixedCost(CostFn):
    """Convex combination ``(1 - weight) * base + weight * relation`` of two costs.

    With ``weight=0`` this is the base cost (for OTPR, ``-Q``); with ``weight=1`` only the keypoint
    relation cost remains (what the authors' released code does, and what this project avoids by default).

    Parameters
    ----------
    base : CostFn
        The task cost, preferably normalised to a scale comparable with the relation cost.
    relation : CostFn
        Usually a :class:`KeypointRelationCost`.
    weight : float
        Mixing weight in ``[0, 1]``.
    """

    def __init__(self, base: CostFn, relation: CostFn, weight: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= float(weight) <= 1.0:
            raise ValueError(f"`weight` must be in [0, 1], got {weight!r}")
        self.base, self.relation, self.weight = base, relation, float(weight)

    def check_dims(self, dx: int, dy: int) -> None:  # noqa: D102
        self.base.check_dims(dx, dy)
        self.relation.check_dims(dx, dy)

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        base = self.base.matrix(x, y)
        return (1.0 - self.weight) * base + self.weight * self.relation.pairwise(x, y)

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        base = self.base.paired_matrix(x, y)
        return (1.0 - self.weight) * base + self.weight * self.relation.paired(x, y)
