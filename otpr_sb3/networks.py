"""Networks of OTPR: the residual-MLP noise predictor (DPPO-like), twin Q critics and the value function."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch as th
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal embedding of integer diffusion steps."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"embedding dim must be even and >= 2, got {dim}")
        self.dim = dim
        half = dim // 2
        self.freqs: th.Tensor
        # Computed once (not saved: a function of `dim`).
        freqs = th.exp(-math.log(10000.0) * th.arange(half, dtype=th.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, k: th.Tensor) -> th.Tensor:
        """Embed steps ``k`` of shape ``(n,)`` into ``(n, dim)``."""
        args = k.float()[:, None] * self.freqs[None]
        return th.cat([args.sin(), args.cos()], dim=-1)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.Mish(), nn.Linear(width, width))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x + self.net(x)


class ResidualMLPDenoiser(nn.Module):
    """Noise predictor ``eps_theta(a_k, k, s)``: residual MLP on ``[a_k, embed(k), s]``.

    Parameters
    ----------
    obs_dim, act_dim : int
    hidden_dim : int
        Width of the residual blocks.
    n_blocks : int
        Number of residual blocks (``n_blocks=3`` with width 256 is the "3x256" actor).
    time_dim : int
        Width of the step embedding.
    """

    optimizer: th.optim.Optimizer

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256, n_blocks: int = 3, time_dim: int = 32) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.Mish())
        self.input = nn.Linear(act_dim + time_dim + obs_dim, hidden_dim)
        self.blocks = nn.Sequential(*[_ResidualBlock(hidden_dim) for _ in range(n_blocks)])
        self.output = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Mish(), nn.Linear(hidden_dim, act_dim))

    def forward(self, a: th.Tensor, k: th.Tensor, obs: th.Tensor) -> th.Tensor:
        """Predicted noise ``(n, act_dim)``."""
        h = self.input(th.cat([a, self.time_embed(k), obs], dim=-1))
        return self.output(self.blocks(h))


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Build a plain MLP."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class TwinQ(nn.Module):
    """Two Q networks ``Q_i(s, a)``; :meth:`forward` returns both, :meth:`min` their minimum."""

    optimizer: th.optim.Optimizer

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden)

    def forward(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Both estimates, each of shape ``(n,)``."""
        x = th.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def min(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """Pessimistic estimate ``min(Q1, Q2)``."""
        q1, q2 = self(obs, act)
        return th.minimum(q1, q2)


class ValueNet(nn.Module):
    """State value ``V(s)``."""

    optimizer: th.optim.Optimizer

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        """Values of shape ``(n,)``."""
        return self.net(obs).squeeze(-1)
