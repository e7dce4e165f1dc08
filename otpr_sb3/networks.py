"""The diffusion actor's network: a residual-MLP noise predictor (DPPO-like)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch as th
import torch.nn.functional as F
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
    """Parameters of one residual block ``x + W2 mish(W1 LayerNorm(x))`` (run by :meth:`ResidualMLPDenoiser._trunk`)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.Mish(), nn.Linear(width, width))


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
        self.obs_dim, self.act_dim, self.time_dim = obs_dim, act_dim, time_dim
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.Mish())
        self.input = nn.Linear(act_dim + time_dim + obs_dim, hidden_dim)
        self.blocks = nn.Sequential(*[_ResidualBlock(hidden_dim) for _ in range(n_blocks)])
        self.output = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Mish(), nn.Linear(hidden_dim, act_dim))

    def forward(self, a: th.Tensor, k: th.Tensor, obs: th.Tensor) -> th.Tensor:
        """Predicted noise ``(n, act_dim)``."""
        h = self.input(th.cat([a, self.time_embed(k), obs], dim=-1))
        return self._trunk(h, self._trunk_params())

    @staticmethod
    def _trunk(h: th.Tensor, params: list[tuple[Any, ...]]) -> th.Tensor:
        # The residual blocks and the output head as functional calls on the modules' own parameters (the only
        # forward pass): at acting batch sizes a module call costs more than its arithmetic.
        *blocks, (norm_w, norm_b, eps, out_w, out_b) = params
        width = (h.shape[-1],)
        for ln_w, ln_b, ln_eps, w1, b1, w2, b2 in blocks:
            x = th.layer_norm(h, width, ln_w, ln_b, ln_eps)
            h = h + F.linear(F.mish(F.linear(x, w1, b1)), w2, b2)
        return F.linear(F.mish(th.layer_norm(h, width, norm_w, norm_b, eps)), out_w, out_b)

    def _trunk_params(self) -> list[tuple[Any, ...]]:
        params: list[tuple[Any, ...]] = []
        for block in self.blocks:
            norm, lin1, _, lin2 = cast(_ResidualBlock, block).net
            norm, lin1, lin2 = cast(nn.LayerNorm, norm), cast(nn.Linear, lin1), cast(nn.Linear, lin2)
            params.append((norm.weight, norm.bias, norm.eps, lin1.weight, lin1.bias, lin2.weight, lin2.bias))
        out_norm, out_lin = cast(nn.LayerNorm, self.output[0]), cast(nn.Linear, self.output[2])
        params.append((out_norm.weight, out_norm.bias, out_norm.eps, out_lin.weight, out_lin.bias))
        return params

    def conditioned(self, obs: th.Tensor, steps: Sequence[int]) -> Callable[[th.Tensor, int], th.Tensor]:
        """``eps_theta(a, steps[i], obs)`` as a function of ``(a, i)``, for a sampler that visits fixed steps.

        The input layer is linear in ``[a, embed(k), obs]``: its state part and its step parts are computed once
        here (one row per state, one per step), so each call costs the action part and the trunk. Equal to
        :meth:`forward` up to float rounding (the input layer's sum is taken in a different order).
        """
        A, Tdim = self.act_dim, self.time_dim
        W = self.input.weight
        k = th.as_tensor(list(steps), device=obs.device)
        base = F.linear(obs, W[:, A + Tdim :], self.input.bias)
        per_step = F.linear(self.time_embed(k), W[:, A : A + Tdim])
        W_a = W[:, :A].t()
        params = self._trunk_params()
        biases = [base + per_step[i] for i in range(len(k))]

        def eps(a: th.Tensor, i: int) -> th.Tensor:
            return self._trunk(th.addmm(biases[i], a, W_a), params)

        return eps
