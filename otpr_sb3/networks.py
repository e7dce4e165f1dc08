"""Networks of OTPR: the residual-MLP noise predictor (DPPO-like), twin Q critics and the value function."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import cast

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
        self.obs_dim, self.act_dim, self.time_dim = obs_dim, act_dim, time_dim
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.Mish())
        self.input = nn.Linear(act_dim + time_dim + obs_dim, hidden_dim)
        self.blocks = nn.Sequential(*[_ResidualBlock(hidden_dim) for _ in range(n_blocks)])
        self.output = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Mish(), nn.Linear(hidden_dim, act_dim))

    def forward(self, a: th.Tensor, k: th.Tensor, obs: th.Tensor) -> th.Tensor:
        """Predicted noise ``(n, act_dim)``."""
        h = self.input(th.cat([a, self.time_embed(k), obs], dim=-1))
        return self._trunk(h)

    def _trunk(self, h: th.Tensor, params: list[tuple[th.Tensor, ...]] | None = None) -> th.Tensor:
        # The residual blocks and the output head as plain tensor operations: at acting batch sizes a module
        # call costs more than its arithmetic. `params` (from `_trunk_params`) spares the attribute look-ups.
        *blocks, (norm_w, norm_b, out_w, out_b) = self._trunk_params() if params is None else params
        width = (h.shape[-1],)  # the layer norms are built with their default eps, 1e-5
        for ln_w, ln_b, w1, b1, w2, b2 in blocks:
            x = th.layer_norm(h, width, ln_w, ln_b, 1e-5)
            h = h + F.linear(F.mish(F.linear(x, w1, b1)), w2, b2)
        return F.linear(F.mish(th.layer_norm(h, width, norm_w, norm_b, 1e-5)), out_w, out_b)

    def _trunk_params(self) -> list[tuple[th.Tensor, ...]]:
        params: list[tuple[th.Tensor, ...]] = []
        for block in self.blocks:
            norm, lin1, _, lin2 = cast(_ResidualBlock, block).net
            norm, lin1, lin2 = cast(nn.LayerNorm, norm), cast(nn.Linear, lin1), cast(nn.Linear, lin2)
            params.append((norm.weight, norm.bias, lin1.weight, lin1.bias, lin2.weight, lin2.bias))
        out_norm, out_lin = cast(nn.LayerNorm, self.output[0]), cast(nn.Linear, self.output[2])
        params.append((out_norm.weight, out_norm.bias, out_lin.weight, out_lin.bias))
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


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Build a plain MLP."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


PAIR_PRECISIONS = ("auto", "float32", "bfloat16")


@functools.cache
def _cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware: AMX tiles or AVX512-BF16 (oneDNN uses both)."""
    checks = (getattr(th.cpu, "_is_amx_tile_supported", None), getattr(th.cpu, "_is_avx512_bf16_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def pair_dtype(precision: str, device: th.device) -> th.dtype:
    """Resolve the dtype of the critics' hidden layers on state-action pairs (:meth:`TwinQ.pairwise_min`).

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"`` is bfloat16 on a CPU with bfloat16 matrix instructions, AMX tiles or AVX512-BF16 (products of
        2,304 x 256 by 256 x 256 measured 6.4x faster than float32 with AMX, 2.2-2.7x with AVX512-BF16 on an
        AMD EPYC), and float32 elsewhere, GPUs included (without them a CPU emulates bfloat16 products, which
        is not known to be faster; measure before choosing ``"bfloat16"``). The rounding is the same on both
        kinds of CPU: bfloat16 inputs, float32 accumulation.
    device : torch.device
        Where the critics run.

    Returns
    -------
    torch.dtype
    """
    if precision not in PAIR_PRECISIONS:
        raise ValueError(f"`pair_precision` must be one of {PAIR_PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return th.bfloat16 if device.type == "cpu" and _cpu_has_bf16_matmul() else th.float32
    return th.bfloat16 if precision == "bfloat16" else th.float32


class TwinQ(nn.Module):
    """Two Q networks ``Q_i(s, a)``; :meth:`forward` returns both, :meth:`min` their minimum.

    Parameters
    ----------
    obs_dim, act_dim : int
        Input sizes.
    hidden : sequence of int
        Hidden widths of each network.
    pair_precision : {"auto", "float32", "bfloat16"}
        Precision of the hidden layers in :meth:`pairwise_min` and :meth:`grouped_min`, the no-gradient
        evaluations on many pairs that build the dual's cost and ``H`` (see :func:`pair_dtype`). The first
        and last layers, :meth:`forward` and :meth:`min` (training) are always float32.
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256), pair_precision: str = "float32"
    ) -> None:
        super().__init__()
        pair_dtype(pair_precision, th.device("cpu"))  # validates
        self.pair_precision = pair_precision
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

    def pairwise_min(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """``min(Q1, Q2)`` on every pair of ``obs`` ``(n, obs_dim)`` and ``act`` ``(m, act_dim)``: shape ``(n, m)``.

        The same function as :meth:`min` on the ``n * m`` concatenated pairs, with the first layer split into its
        state and action parts: ``W [s; a] = W_s s + W_a a`` is computed on ``n`` states and ``m`` actions and
        broadcast, instead of on ``n * m`` concatenated rows (the results agree to float rounding). With a
        bfloat16 ``pair_precision`` the hidden layers run in bfloat16 (float32 accumulation): on Fetch critics
        the exact minibatch plan moves by 0.25% in total variation, a twentieth of the dual's own marginal error.
        """
        return self._split_min(obs, act.unsqueeze(0), (obs.shape[0], act.shape[0]))

    def grouped_min(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """``min(Q1, Q2)`` of each state ``obs[i]`` ``(n, obs_dim)`` with its own actions ``act[i]`` ``(n, m, act_dim)``.

        Shape ``(n, m)``; the state part of the first layer is computed once per state (see :meth:`pairwise_min`).
        """
        if act.ndim != 3 or act.shape[0] != obs.shape[0]:
            raise ValueError(f"`act` must have shape ({obs.shape[0]}, m, act_dim), got {tuple(act.shape)}")
        return self._split_min(obs, act, (act.shape[0], act.shape[1]))

    def _split_min(self, obs: th.Tensor, act: th.Tensor, shape: tuple[int, int]) -> th.Tensor:
        d = obs.shape[1]
        # Only float32 evaluations are lowered: a policy cast to float64 keeps its precision.
        low = obs.dtype == th.float32 and pair_dtype(self.pair_precision, obs.device) != th.float32
        q = []
        for net in (self.q1, self.q2):
            first = net[0]
            assert isinstance(first, nn.Linear)
            h = F.linear(obs, first.weight[:, :d], first.bias).unsqueeze(1) + F.linear(act, first.weight[:, d:])
            h = h.reshape(shape[0] * shape[1], -1)
            if low:
                # The output layer stays float32: Q's offset is large next to the differences the plan uses.
                with th.autocast(obs.device.type, dtype=th.bfloat16):
                    h = net[1:-1](h)
                q.append(net[-1](h.float()).reshape(shape))
            else:
                q.append(net[1:](h).reshape(shape))
        return th.minimum(q[0], q[1])


class ValueNet(nn.Module):
    """State value ``V(s)``."""

    optimizer: th.optim.Optimizer

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        """Values of shape ``(n,)``."""
        return self.net(obs).squeeze(-1)
