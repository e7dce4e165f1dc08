"""Dual potentials: tabular (one value per support point) or neural (an MLP on points)."""

from __future__ import annotations

from collections.abc import Sequence

import torch as th
from torch import nn


class TabularPotential(nn.Module):
    """One learnable value per point of a finite support; called with integer indices.

    Parameters
    ----------
    size : int
        Number of support points.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"`size` must be positive, got {size}")
        self.values = nn.Parameter(th.zeros(size))

    def forward(self, index: th.Tensor) -> th.Tensor:
        """Values at ``index`` (a long tensor of shape ``(n,)``)."""
        if index.dtype not in (th.int32, th.int64):
            raise TypeError("TabularPotential is called with integer indices into its support")
        return self.values[index]


class MLPPotential(nn.Module):
    """Potential given by an MLP on (standardised) points, as in Seguy et al. (2018).

    Parameters
    ----------
    in_dim : int
        Dimension of the points.
    hidden_sizes : sequence of int
        Widths of the hidden layers (the paper uses two layers).
    activation : type of torch.nn.Module
        Hidden activation.

    Notes
    -----
    The buffers ``shift`` and ``scale`` standardise inputs; :meth:`set_input_statistics` fixes them from a
    sample so that the network sees unit-scale inputs whatever the data's units.
    """

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int] = (128, 128), activation: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"`in_dim` must be positive, got {in_dim}")
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, int(h)), activation()]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.shift: th.Tensor
        self.scale: th.Tensor
        self.register_buffer("shift", th.zeros(in_dim))
        self.register_buffer("scale", th.ones(in_dim))

    @th.no_grad()
    def set_input_statistics(self, sample: th.Tensor) -> None:
        """Standardise inputs with the mean and standard deviation of ``sample`` ``(n, in_dim)``."""
        self.shift.copy_(sample.mean(0))
        self.scale.copy_(sample.std(0).clamp_min(1e-6) if sample.shape[0] > 1 else th.ones_like(self.scale))

    def forward(self, x: th.Tensor) -> th.Tensor:
        """Values ``(n,)`` at points ``x`` ``(n, in_dim)``."""
        if x.shape[-1] != self.shift.shape[0]:  # else broadcasting with `shift` would silently give wrong values
            hint = " (a 1-D array is read as n points of dimension 1: pass one point as x[None])" if x.shape[-1] == 1 else ""
            raise ValueError(
                f"{type(self).__name__} takes points of dimension {self.shift.shape[0]}, got shape {tuple(x.shape)}{hint}"
            )
        return self.net((x - self.shift) / self.scale).squeeze(-1)


def make_potential(kind: str | nn.Module, in_dim: int, size: int | None, hidden_sizes: Sequence[int]) -> nn.Module:
    """Build a potential from ``"mlp"``, ``"tabular"`` or pass a module through.

    Parameters
    ----------
    kind : {"mlp", "tabular"} or torch.nn.Module
    in_dim : int
        Point dimension (for ``"mlp"``).
    size : int or None
        Support size (for ``"tabular"``; ``None`` when the data is not a finite set).
    hidden_sizes : sequence of int

    Returns
    -------
    torch.nn.Module
    """
    if isinstance(kind, nn.Module):
        return kind
    if kind == "mlp":
        return MLPPotential(in_dim, hidden_sizes)
    if kind == "tabular":
        if size is None:
            raise ValueError("tabular potentials need a finite data set (a tensor of points), not a sampler")
        return TabularPotential(size)
    raise ValueError(f"`potentials` must be 'mlp', 'tabular' or a torch.nn.Module, got {kind!r}")
