"""OTPR's critics: twin Q (SB3's ``ContinuousCritic``) with fast paths on many pairs, V, and running scales.

The critics take observations already prepared by the policy (features, standardised), so their own
features extractor is a flatten over that ``(obs_dim,)`` box.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor, create_mlp
from torch import nn

PAIR_PRECISIONS = ("auto", "float32", "bfloat16")


@functools.cache
def _cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware: AMX tiles or AVX512-BF16 (oneDNN uses both)."""
    checks = (getattr(th.cpu, "_is_amx_tile_supported", None), getattr(th.cpu, "_is_avx512_bf16_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def pair_dtype(precision: str, device: th.device) -> th.dtype:
    """Resolve the dtype of the critics' hidden layers on state-action pairs (:meth:`TwinQCritic.pairwise_min`).

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"`` is bfloat16 on a CPU with bfloat16 matrix instructions (AMX tiles or AVX512-BF16) and float32
        elsewhere, GPUs included (without them a CPU emulates bfloat16 products; measure before choosing
        ``"bfloat16"``). The rounding is the same on both kinds of CPU: bfloat16 inputs, float32 accumulation.
        docs/benchmarks.rst gives the measured speed-ups.
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


def _feature_box(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (dim,), np.float32)


class TwinQCritic(ContinuousCritic):
    """Two Q networks on prepared observations: SB3's ``ContinuousCritic`` with ``n_critics=2``.

    Adds :meth:`both` and :meth:`min` (shape ``(n,)``) and two no-gradient fast paths on many pairs,
    :meth:`pairwise_min` and :meth:`grouped_min`, which split the first layer into its state and action parts.

    Parameters
    ----------
    obs_dim, act_dim : int
        Sizes of the prepared observation and of the action.
    hidden : sequence of int
        Hidden widths of each network.
    pair_precision : {"auto", "float32", "bfloat16"}
        Precision of the hidden layers in the fast paths (see :func:`pair_dtype`); the first and last layers,
        and every evaluation with gradients, are float32.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256), pair_precision: str = "float32"
    ) -> None:
        pair_dtype(pair_precision, th.device("cpu"))  # validates
        box = _feature_box(obs_dim)
        super().__init__(
            box,
            spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
            net_arch=list(hidden),
            features_extractor=FlattenExtractor(box),
            features_dim=obs_dim,
            n_critics=2,
            share_features_extractor=False,
        )
        self.pair_precision = pair_precision
        # bfloat16 copies of the hidden layers for the pair fast paths, by (network, layer): kept between optimiser
        # steps once `keep_pair_weights` ties them to the optimiser; None: made at every evaluation.
        self._pair_weights: dict[tuple[int, int], tuple[tuple[int, int, int], th.Tensor, th.Tensor]] | None = None

    def keep_pair_weights(self, optimizer: th.optim.Optimizer) -> None:
        """Keep the bfloat16 copies of the hidden layers that the pair fast paths use, until ``optimizer`` steps.

        Casting the hidden layers at every evaluation costs about as much as a pair evaluation's own ReLU passes. The
        copies are dropped after every step of ``optimizer``, which must be the one that trains these networks (a
        fused Adam changes the weights in place without a trace on the tensors), and remade when a layer's
        storage or version changes (``load_state_dict``, ``to``, a non-fused optimiser). Weights changed through
        ``.data`` by other code are not seen: leave such a critic without this (a target critic).
        """
        self._pair_weights = {}
        optimizer.register_step_post_hook(self._drop_pair_weights)

    def __getstate__(self) -> dict[str, Any]:
        # A copy's optimiser has no step hook (optimisers do not copy theirs): it casts at every evaluation.
        state = dict(super().__getstate__())
        state["_pair_weights"] = None
        return state

    def _drop_pair_weights(self, *_: Any) -> None:
        if self._pair_weights is not None:
            self._pair_weights.clear()

    def _low_weights(self, key: tuple[int, int], layer: nn.Linear) -> tuple[th.Tensor, th.Tensor]:
        stamp = (layer.weight.data_ptr(), layer.weight._version, layer.bias._version)
        kept = self._pair_weights
        hit = None if kept is None else kept.get(key)
        if hit is None or hit[0] != stamp:
            with th.no_grad():  # the fast paths are gradient-free: a kept copy holds no graph
                hit = (stamp, layer.weight.to(th.bfloat16), layer.bias.to(th.bfloat16))
            if kept is not None:
                kept[key] = hit
        return hit[1], hit[2]

    def both(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Both estimates, each of shape ``(n,)``."""
        q1, q2 = self(obs, act)
        return q1.squeeze(-1), q2.squeeze(-1)

    def min(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """Pessimistic estimate ``min(Q1, Q2)``, shape ``(n,)``."""
        q1, q2 = self.both(obs, act)
        return th.minimum(q1, q2)

    def pairwise_min(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """``min(Q1, Q2)`` on every pair of ``obs`` ``(n, obs_dim)`` and ``act`` ``(m, act_dim)``: shape ``(n, m)``.

        The same function as :meth:`min` on the ``n * m`` concatenated pairs, with ``W [s; a] = W_s s + W_a a``
        computed on ``n`` states and ``m`` actions and broadcast (equal up to float rounding).
        """
        return self._split_min(obs, act.unsqueeze(0), (obs.shape[0], act.shape[0]))

    def grouped_min(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """``min(Q1, Q2)`` of each state ``obs[i]`` with its own actions ``act[i]`` ``(n, m, act_dim)``: shape ``(n, m)``."""
        if act.ndim != 3 or act.shape[0] != obs.shape[0]:
            raise ValueError(f"`act` must have shape ({obs.shape[0]}, m, act_dim), got {tuple(act.shape)}")
        return self._split_min(obs, act, (act.shape[0], act.shape[1]))

    def _split_min(self, obs: th.Tensor, act: th.Tensor, shape: tuple[int, int], concatenate: bool = True) -> th.Tensor:
        # Only float32 evaluations are lowered: a policy cast to float64 keeps its precision. `concatenate=False`
        # splits the first layer for every pair (a benchmark's A/B against the concatenated rows).
        low = obs.dtype == th.float32 and pair_dtype(self.pair_precision, obs.device) != th.float32
        pairs = _pair_inputs(obs, act, shape) if concatenate else None
        q = []
        for i, net in enumerate(self.q_networks):
            first, hidden, last = _relu_mlp_layers(net)
            h = th.relu_(_first_layer(first, obs, act, pairs).reshape(shape[0] * shape[1], -1))
            if not low:
                for layer in hidden:
                    h = F.relu(layer(h))
                q.append(last(h).reshape(shape))
                continue
            # bfloat16 hidden layers, as autocast would run them (inputs, weights and biases rounded to bfloat16,
            # float32 accumulation) but with each ReLU fused into its product; the output layer stays float32: Q's
            # offset is large next to the differences the plan uses. The first layer's ReLU runs in float32 (faster,
            # the same numbers).
            h = h.to(th.bfloat16)
            for j, layer in enumerate(hidden):
                h = _linear_relu(h, *self._low_weights((i, j), layer))
            q.append(last(h.float()).reshape(shape))
        return th.minimum(q[0], q[1])


def _pair_inputs(obs: th.Tensor, act: th.Tensor, shape: tuple[int, int]) -> th.Tensor | None:
    """Return the concatenated ``[s; a]`` rows if each state has its own actions (``act`` ``(n, m, act_dim)``), else None.

    Each state's own actions: one product on the ``n * m`` concatenated rows costs less than the split's two
    products and its broadcast sum over those rows (the whole evaluation in about two thirds of the time at 256
    states x 9 actions, ``docs/benchmarks.rst``).
    The same actions for every state (``act`` ``(1, m, act_dim)``, ``n > 1``): the split computes the first layer on
    ``n + m`` rows only.
    """
    if act.shape[0] != shape[0]:
        return None
    return th.cat([obs.unsqueeze(1).expand(-1, shape[1], -1), act], 2).reshape(shape[0] * shape[1], -1)


def _first_layer(first: nn.Linear, obs: th.Tensor, act: th.Tensor, pairs: th.Tensor | None) -> th.Tensor:
    """Return the first layer's pre-activation on every pair: on ``pairs`` if given, else split into its two parts."""
    if pairs is not None:
        return F.linear(pairs, first.weight, first.bias)
    d = obs.shape[1]
    return F.linear(obs, first.weight[:, :d], first.bias).unsqueeze(1) + F.linear(act, first.weight[:, d:])


def _relu_mlp_layers(net: nn.Module) -> tuple[nn.Linear, list[nn.Linear], nn.Linear]:
    """Return the first, hidden and output layers of an SB3 ``create_mlp`` network with ReLU activations."""
    assert isinstance(net, nn.Sequential)
    modules = list(net)
    assert all(isinstance(m, nn.Linear) for m in modules[::2]) and all(isinstance(m, nn.ReLU) for m in modules[1::2])
    linear = [m for m in modules if isinstance(m, nn.Linear)]
    return linear[0], linear[1:-1], linear[-1]


@functools.cache
def _fused_linear_relu_runs(dtype: th.dtype) -> bool:
    """Whether oneDNN's fused product and ReLU runs on this CPU in ``dtype``.

    bfloat16 needs AVX-512 at least: on a CPU with AVX2 alone (an "AMD EPYC" here, 2026-12-08) oneDNN cannot create
    the primitive and raises, where the unfused product runs.
    """
    if not th.backends.mkldnn.is_available():
        return False
    try:
        x = th.ones(2, 256, dtype=dtype)
        th.ops.mkldnn._linear_pointwise(x, th.ones(256, 256, dtype=dtype), th.zeros(256, dtype=dtype), "relu", [], "")
    except RuntimeError:
        return False
    return True


def _linear_relu(h: th.Tensor, weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
    """Return ``relu(h @ weight.T + bias)``.

    Without gradients on a CPU: oneDNN's product with the ReLU fused (the same numbers as the two operations, one
    pass over the output fewer), where it runs in ``h``'s dtype.
    """
    if h.device.type == "cpu" and not th.is_grad_enabled() and _fused_linear_relu_runs(h.dtype):
        return th.ops.mkldnn._linear_pointwise(h, weight, bias, "relu", [], "")
    return th.relu_(F.linear(h, weight, bias))


class ValueNet(nn.Module):
    """State value ``V(s)`` on prepared observations."""

    optimizer: th.optim.Optimizer

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        self.net = nn.Sequential(*create_mlp(obs_dim, 1, list(hidden)))

    def forward(self, obs: th.Tensor) -> th.Tensor:
        """Values of shape ``(n,)``."""
        return self.net(obs).squeeze(-1)


class RunningScales(nn.Module):
    """Running spreads of the critic: standard deviations of ``Q`` and ``Q - V`` and the mean of ``|Q|``.

    EMAs over the critic's training batches (rate 0.01; the first batch sets them). They scale the guidances'
    scores and the dual's cost, so that temperatures and ``reg`` do not depend on the reward scale.
    """

    def __init__(self) -> None:
        super().__init__()
        self.q_spread: th.Tensor
        self.adv_spread: th.Tensor
        self.q_abs_mean: th.Tensor
        self.count: th.Tensor
        for name in ("q_spread", "adv_spread", "q_abs_mean"):
            self.register_buffer(name, th.ones(()))
        self.register_buffer("count", th.zeros((), dtype=th.long))

    @th.no_grad()
    def update(self, q: th.Tensor, adv: th.Tensor) -> None:
        """Fold in a batch of ``Q`` and ``Q - V`` values."""
        # The rate as a tensor: no host synchronisation on an accelerator.
        rate = th.where(self.count == 0, 1.0, 0.01).to(q.dtype)
        self.q_spread.lerp_(q.std().clamp_min(1e-3), rate)
        self.adv_spread.lerp_(adv.std().clamp_min(1e-3), rate)
        self.q_abs_mean.lerp_(q.abs().mean().clamp_min(1e-3), rate)
        self.count += 1
