"""Ground costs between point clouds, as small callable classes (in the spirit of OTT's ``CostFn``).

Every cost maps ``x`` of shape ``(n, d)`` and ``y`` of shape ``(m, d')`` to an ``(n, m)`` matrix.
Evaluation is chunked over rows when ``chunk_size`` is set, and the matrix can be normalised by a
scale that is either computed on each call (``normalize="max"`` or ``"mean"``) or frozen once with
:meth:`CostFn.fit_scale` so that minibatches of a stochastic solver all see the same cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch as th

from neural_ot._arrays import ArrayLike, is_numpy, result_dtype, to_output, to_tensor

Normalize = Literal["max", "mean"] | float | None


class CostFn(ABC):
    """Base class of ground costs.

    Parameters
    ----------
    normalize : {"max", "mean"}, float or None
        Divide the cost matrix by its maximum, its mean, or a fixed positive number. ``None`` keeps it.
    chunk_size : int or None
        Evaluate at most this many rows at a time (bounds the memory of intermediate tensors).
    """

    def __init__(self, normalize: Normalize = None, chunk_size: int | None = None) -> None:
        if isinstance(normalize, str) and normalize not in ("max", "mean"):
            raise ValueError(f"`normalize` must be 'max', 'mean', a positive float or None, got {normalize!r}")
        if isinstance(normalize, int | float) and not normalize > 0:
            raise ValueError(f"`normalize` as a number must be positive, got {normalize!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"`chunk_size` must be a positive int or None, got {chunk_size!r}")
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.scale: float | None = float(normalize) if isinstance(normalize, int | float) else None

    @abstractmethod
    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Un-normalised cost matrix ``(n, m)`` between rows of ``x`` and rows of ``y``."""

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Un-normalised costs ``c(x_i, y_i)`` of aligned rows, shape ``(n,)``."""
        return th.stack([self.pairwise(xi[None], yi[None])[0, 0] for xi, yi in zip(x, y)])

    def check_dims(self, dx: int, dy: int) -> None:
        """Raise ``ValueError`` if points of dimensions ``dx`` and ``dy`` cannot be compared (any pair can by default)."""
        return None

    def _matrix(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        if self.chunk_size is None or x.shape[0] <= self.chunk_size:
            return self.pairwise(x, y)
        return th.cat([self.pairwise(x[i : i + self.chunk_size], y) for i in range(0, x.shape[0], self.chunk_size)])

    def _statistic(self, C: th.Tensor) -> float:
        value = float(C.abs().max() if self.normalize == "max" else C.abs().mean())
        return value if value > 0 else 1.0

    def fit_scale(self, x: ArrayLike, y: ArrayLike) -> float:
        """Freeze the normalisation scale to the statistic of the cost between ``x`` and ``y``.

        Returns
        -------
        float
            The scale every later call divides by.
        """
        if self.normalize is None:
            self.scale = 1.0
        elif isinstance(self.normalize, str):
            self.scale = self._statistic(self._matrix(to_tensor(x, "x"), to_tensor(y, "y")))
        return float(self.scale or 1.0)

    def matrix(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Normalised cost matrix between tensors ``x`` ``(n, d)`` and ``y`` ``(m, d')``."""
        C = self._matrix(x, y)
        return C / self._scale_for(C)

    def paired_matrix(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Normalised costs ``c(x_i, y_i)`` of aligned rows of tensors, shape ``(n,)``.

        A per-call statistic cannot be computed from aligned pairs, so with ``normalize="max"`` or
        ``"mean"`` the scale must first be frozen by :meth:`fit_scale`.
        """
        if self.scale is None and self.normalize is not None:
            raise ValueError(
                f"{type(self).__name__}: call `fit_scale` before evaluating paired costs with normalize={self.normalize!r}"
            )
        return self.paired(x, y) / (self.scale or 1.0)

    def __call__(self, x: ArrayLike, y: ArrayLike) -> ArrayLike:
        """Cost matrix between ``x`` ``(n, d)`` and ``y`` ``(m, d')``, normalised as configured."""
        as_numpy = is_numpy(x) and is_numpy(y)
        C = self.matrix(*self._prepare(x, y))
        if not bool(th.isfinite(C).all()):
            raise ValueError(f"{type(self).__name__} produced NaN or infinite costs; check `x` and `y`")
        return to_output(C, as_numpy, C.dtype) if as_numpy else C

    def paired_cost(self, x: ArrayLike, y: ArrayLike) -> th.Tensor:
        """Normalised costs ``c(x_i, y_i)`` of aligned rows, as a tensor of shape ``(n,)``."""
        xt, yt = self._prepare(x, y)
        if xt.shape[0] != yt.shape[0]:
            raise ValueError(f"`x` and `y` must have the same number of rows, got {xt.shape[0]} and {yt.shape[0]}")
        return self.paired_matrix(xt, yt)

    def _scale_for(self, C: th.Tensor) -> float:
        if self.scale is not None:
            return self.scale
        return 1.0 if self.normalize is None else self._statistic(C)

    def _prepare(self, x: ArrayLike, y: ArrayLike) -> tuple[th.Tensor, th.Tensor]:
        dtype = result_dtype(x, y)
        xt, yt = to_tensor(x, "x", dtype=dtype), to_tensor(y, "y", dtype=dtype)
        if xt.ndim == 1:
            xt = xt[:, None]
        if yt.ndim == 1:
            yt = yt[:, None]
        return xt, yt.to(xt.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize={self.normalize!r})"


class _SameSpaceCost(CostFn):
    """Costs between points of the same dimension."""

    def check_dims(self, dx: int, dy: int) -> None:  # noqa: D102
        if dx != dy:
            raise ValueError(f"{type(self).__name__} needs `x` and `y` of the same dimension, got {dx} and {dy}")

    def _prepare(self, x: ArrayLike, y: ArrayLike) -> tuple[th.Tensor, th.Tensor]:
        xt, yt = super()._prepare(x, y)
        self.check_dims(xt.shape[1], yt.shape[1])
        return xt, yt


class SqEuclidean(_SameSpaceCost):
    """Squared Euclidean cost :math:`\\|x - y\\|_2^2`."""

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        sq = x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * x @ y.T
        return sq.clamp_min_(0.0)

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return (x - y).square().sum(1)


class Euclidean(_SameSpaceCost):
    """Euclidean cost :math:`\\|x - y\\|_2`."""

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.cdist(x, y, p=2.0)

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return (x - y).norm(dim=1)


class L1(_SameSpaceCost):
    """Manhattan cost :math:`\\|x - y\\|_1`."""

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.cdist(x, y, p=1.0)

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return (x - y).abs().sum(1)


class Cosine(_SameSpaceCost):
    """Cosine cost :math:`1 - \\cos(x, y)`, in ``[0, 2]``; zero vectors have cosine 0."""

    @staticmethod
    def _unit(x: th.Tensor) -> th.Tensor:
        return x / x.norm(dim=1, keepdim=True).clamp_min(th.finfo(x.dtype).tiny)

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return 1.0 - self._unit(x) @ self._unit(y).T

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        return 1.0 - (self._unit(x) * self._unit(y)).sum(1)


class CallableCost(CostFn):
    """A user-supplied cost, for example :math:`c(s, a) = -Q(s, a)`.

    Parameters
    ----------
    fn : callable
        With ``kind="pairwise"``, ``fn(x, y)`` returns the ``(n, m)`` matrix. With ``kind="paired"``,
        ``fn(x, y)`` returns ``c(x_i, y_i)`` for aligned rows (shape ``(n,)``), which is the natural form
        of a critic network; the matrix is then built by pairing every row with every column.
    kind : {"pairwise", "paired"}
        Which of the two forms ``fn`` implements.
    normalize, chunk_size
        As in :class:`CostFn`.
    """

    def __init__(
        self,
        fn: Callable[[th.Tensor, th.Tensor], th.Tensor],
        kind: Literal["pairwise", "paired"] = "pairwise",
        normalize: Normalize = None,
        chunk_size: int | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")
        if kind not in ("pairwise", "paired"):
            raise ValueError(f"`kind` must be 'pairwise' or 'paired', got {kind!r}")
        super().__init__(normalize=normalize, chunk_size=chunk_size)
        self.fn = fn
        self.kind = kind

    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        n, m = x.shape[0], y.shape[0]
        if self.kind == "paired":
            out = self.fn(x.repeat_interleave(m, dim=0), y.repeat(n, 1)).reshape(n, m)
        else:
            out = self.fn(x, y)
        if tuple(out.shape) != (n, m):
            raise ValueError(f"the cost callable returned shape {tuple(out.shape)}, expected {(n, m)}")
        return out

    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:  # noqa: D102
        if self.kind == "paired":
            return self.fn(x, y).reshape(-1)
        return super().paired(x, y)


_COSTS: dict[str, type[CostFn]] = {
    "sqeuclidean": SqEuclidean,
    "euclidean": Euclidean,
    "l1": L1,
    "cityblock": L1,
    "cosine": Cosine,
}


def get_cost(cost: str | CostFn | Callable[[th.Tensor, th.Tensor], th.Tensor], **kwargs: object) -> CostFn:
    """Build a cost from a name (``"sqeuclidean"``, ``"euclidean"``, ``"l1"``, ``"cosine"``), a callable or a ``CostFn``.

    Parameters
    ----------
    cost : str, CostFn or callable
        The cost. A plain callable is wrapped in :class:`CallableCost` (pairwise form).
    **kwargs
        Passed to the constructor (``normalize``, ``chunk_size``).

    Returns
    -------
    CostFn
    """
    if isinstance(cost, CostFn):
        return cost
    if isinstance(cost, str):
        if cost.lower() not in _COSTS:
            raise ValueError(f"`cost` must be one of {sorted(_COSTS)}, a CostFn or a callable, got {cost!r}")
        return _COSTS[cost.lower()](**kwargs)  # type: ignore[arg-type]
    if callable(cost):
        return CallableCost(cost, **kwargs)  # type: ignore[arg-type]
    raise TypeError(f"`cost` must be a string, a CostFn or a callable, got {type(cost).__name__}")
