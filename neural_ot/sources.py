"""Where minibatches come from: finite point sets (with weights), sampling functions or datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch as th
from torch.utils.data import Dataset

Sampler = Callable[[int, th.Generator], th.Tensor]


class Source:
    """Draws ``(indices, points)`` minibatches from a measure; ``indices`` is ``None`` if not finite."""

    size: int | None = None
    dim: int

    def sample(self, batch_size: int, generator: th.Generator) -> tuple[th.Tensor | None, th.Tensor]:
        """Draw ``batch_size`` i.i.d. points."""
        raise NotImplementedError


class PointSource(Source):
    """A finite weighted point set; sampling draws indices with probability proportional to ``weights``.

    Parameters
    ----------
    points : torch.Tensor of shape (n, d)
    weights : torch.Tensor of shape (n,), optional
        Non-negative, any positive total; uniform when omitted.
    """

    def __init__(self, points: th.Tensor, weights: th.Tensor | None = None) -> None:
        if points.ndim == 1:
            points = points[:, None]
        if points.ndim != 2 or points.shape[0] == 0:
            raise ValueError(f"points must have shape (n, d) with n >= 1, got {tuple(points.shape)}")
        rows = max(1, (1 << 20) // max(1, points.shape[1]))  # chunked: the check must not copy the data
        if not all(bool(th.isfinite(points[i : i + rows]).all()) for i in range(0, points.shape[0], rows)):
            raise ValueError("points contain NaN or infinite values")
        self.points = points
        self.size, self.dim = points.shape
        self.weights = None if weights is None else weights / weights.sum()

    def sample(self, batch_size: int, generator: th.Generator) -> tuple[th.Tensor | None, th.Tensor]:  # noqa: D102
        gen_device = generator.device
        if self.weights is None:
            idx = th.randint(self.size or 1, (batch_size,), generator=generator, device=gen_device)
        else:
            idx = th.multinomial(self.weights.to(gen_device), batch_size, replacement=True, generator=generator)
        idx = idx.to(self.points.device)
        return idx, self.points[idx]


class SamplerSource(Source):
    """A function ``sampler(batch_size, generator) -> (batch_size, d)`` tensor of i.i.d. points."""

    def __init__(self, sampler: Sampler, dim: int) -> None:
        self.sampler = sampler
        self.dim = dim

    def sample(self, batch_size: int, generator: th.Generator) -> tuple[th.Tensor | None, th.Tensor]:  # noqa: D102
        pts = th.as_tensor(self.sampler(batch_size, generator))
        if pts.ndim == 1:
            pts = pts[:, None]
        if pts.shape != (batch_size, self.dim):
            raise ValueError(f"the sampler returned shape {tuple(pts.shape)}, expected {(batch_size, self.dim)}")
        return None, pts


class DatasetSource(Source):
    """A map-style ``torch.utils.data.Dataset`` of points, sampled uniformly."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset
        self.length = len(dataset)  # type: ignore[arg-type]
        if self.length == 0:
            raise ValueError("the dataset is empty")
        first = th.as_tensor(dataset[0])
        self.dim = int(first.numel())

    def sample(self, batch_size: int, generator: th.Generator) -> tuple[th.Tensor | None, th.Tensor]:  # noqa: D102
        idx = th.randint(self.length, (batch_size,), generator=generator, device=generator.device).cpu()
        pts = th.stack([th.as_tensor(self.dataset[int(i)]).reshape(-1) for i in idx])
        return None, pts


def as_source(data: Any, name: str, weights: th.Tensor | None = None, dim: int | None = None) -> Source:
    """Wrap a tensor/array, a sampling function or a dataset as a :class:`Source`.

    Parameters
    ----------
    data : tensor, array, callable or Dataset
    name : str
        Argument name for messages.
    weights : torch.Tensor, optional
        Weights of a finite point set.
    dim : int, optional
        Point dimension, required for a sampling function (probed with one draw otherwise).

    Returns
    -------
    Source
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, Dataset):
        return DatasetSource(data)
    if callable(data) and not isinstance(data, th.Tensor):
        if dim is None:
            probe = data(2, th.Generator().manual_seed(0))
            dim = int(probe.shape[1]) if probe.ndim == 2 else 1
        return SamplerSource(data, dim)
    if weights is not None and data is not None:
        return PointSource(data, weights)
    try:
        return PointSource(data)
    except (TypeError, AttributeError) as e:
        raise TypeError(f"`{name}` must be a tensor of points, a sampling function or a Dataset") from e
