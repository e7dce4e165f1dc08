"""OTPR policy: diffusion actor (and its EMA), twin Q critics, value function and the OT potentials.

The actor acts in SB3's scaled action space ``[-1, 1]`` (``squash_output=True``), so ``predict``
returns actions in the environment's units. Observations, including dict observations such as the
goal-conditioned Fetch tasks, are flattened (keys in sorted order) and standardised with statistics
from the demonstrations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from neural_ot import MLPPotential, resample_from_scores
from otpr_sb3.diffusion import VPSchedule
from otpr_sb3.networks import ResidualMLPDenoiser, TwinQ, ValueNet

GUIDANCE = ("compatibility", "q", "advantage")


def flat_obs_dim(space: spaces.Space) -> int:
    """Dimension of a Box or Dict-of-Box observation space once flattened."""
    if isinstance(space, spaces.Dict):
        return sum(flat_obs_dim(space.spaces[k]) for k in sorted(space.spaces))
    if isinstance(space, spaces.Box | spaces.MultiBinary):
        return int(np.prod(space.shape))
    raise TypeError(f"OTPR supports Box, MultiBinary and Dict observations of those, got {type(space).__name__}")


class OTPRPolicy(BasePolicy):
    """Policy of :class:`~otpr_sb3.OTPR`.

    Parameters
    ----------
    observation_space, action_space : gymnasium spaces
        ``action_space`` must be a ``Box``.
    lr_schedule : callable
        Learning-rate schedule of the critics (SB3 convention).
    actor_hidden_dim, actor_n_blocks, time_dim : int
        Residual-MLP noise predictor (DPPO-like); the default is the "3x256" actor.
    critic_hidden : sequence of int
        Hidden sizes of Q and V (the paper uses [256]*3 or [512]*3).
    potential_hidden : sequence of int
        Hidden sizes of the potentials u(s), v(a) (the paper: a 2-layer MLP).
    n_timesteps : int
        Diffusion training horizon T (20 in the paper).
    ddim_steps : int
        DDIM sampling steps K (<= T).
    n_candidates : int
        L, the candidates drawn per state during collection (8 in the paper).
    guidance : {"compatibility", "q", "advantage"}
        How candidates are weighted: by H (OTPR), by exp(Q) or by exp(advantage).
    expectile : float
        IQL expectile; also used by the fallback weights before the dual is trained.
    temperature : float
        Inverse temperature of the "q" and "advantage" weights (on normalised values).
    actor_learning_rate, value_learning_rate : float
    optimizer_class, optimizer_kwargs
        As in SB3.
    eval_noise_seed : int or None
        Fixed noise of deterministic predictions: zeros by default (the DDIM image of the noise mode, which
        avoids the systematic offset a random fixed vector adds to every action), or a seeded draw.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        actor_hidden_dim: int = 256,
        actor_n_blocks: int = 3,
        time_dim: int = 32,
        critic_hidden: Sequence[int] = (256, 256, 256),
        potential_hidden: Sequence[int] = (128, 128),
        n_timesteps: int = 20,
        ddim_steps: int = 5,
        n_candidates: int = 8,
        guidance: str = "compatibility",
        expectile: float = 0.7,
        temperature: float = 3.0,
        actor_learning_rate: float = 1e-4,
        value_learning_rate: float | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        eval_noise_seed: int | None = None,
    ) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"OTPR needs a continuous (Box) action space, got {type(action_space).__name__}")
        if n_candidates < 1:
            raise ValueError(f"`n_candidates` (L) must be >= 1, got {n_candidates}")
        if not 1 <= ddim_steps <= n_timesteps:
            raise ValueError(f"`ddim_steps` must be in [1, n_timesteps={n_timesteps}], got {ddim_steps}")
        if guidance not in GUIDANCE:
            raise ValueError(f"`guidance` must be one of {GUIDANCE}, got {guidance!r}")
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"`expectile` must be in (0, 1), got {expectile}")
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
        )
        self.obs_dim = flat_obs_dim(observation_space)
        self.act_dim = int(np.prod(action_space.shape))
        self.arch: dict[str, Any] = dict(
            actor_hidden_dim=actor_hidden_dim,
            actor_n_blocks=actor_n_blocks,
            time_dim=time_dim,
            critic_hidden=tuple(critic_hidden),
            potential_hidden=tuple(potential_hidden),
            n_timesteps=n_timesteps,
            ddim_steps=ddim_steps,
            n_candidates=n_candidates,
            guidance=guidance,
            expectile=expectile,
            temperature=temperature,
            actor_learning_rate=actor_learning_rate,
            value_learning_rate=value_learning_rate,
            eval_noise_seed=eval_noise_seed,
        )
        self.ddim_steps, self.n_candidates, self.guidance = ddim_steps, n_candidates, guidance
        # The dual's cost c(s, a) on aligned pairs, set by the algorithm so that H uses the very cost the
        # potentials were trained with; -Q / cost_scale when unset.
        self.pair_cost: Callable[[th.Tensor, th.Tensor], th.Tensor] | None = None
        self.expectile, self.temperature = expectile, temperature
        self._build(lr_schedule, actor_learning_rate, value_learning_rate)

    def _build(self, lr_schedule: Schedule, actor_lr: float, value_lr: float | None) -> None:
        a = self.arch
        self.schedule = VPSchedule(a["n_timesteps"])
        self.actor = ResidualMLPDenoiser(self.obs_dim, self.act_dim, a["actor_hidden_dim"], a["actor_n_blocks"], a["time_dim"])
        self.actor_ema = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = TwinQ(self.obs_dim, self.act_dim, a["critic_hidden"])
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNet(self.obs_dim, a["critic_hidden"])
        self.u = MLPPotential(self.obs_dim, a["potential_hidden"])
        self.v = MLPPotential(self.act_dim, a["potential_hidden"])
        self.obs_mean: th.Tensor
        self.obs_std: th.Tensor
        self.cost_scale: th.Tensor
        self.reg: th.Tensor
        self.dual_ready: th.Tensor
        self.eval_noise: th.Tensor
        self.register_buffer("obs_mean", th.zeros(self.obs_dim))
        self.register_buffer("obs_std", th.ones(self.obs_dim))
        self.register_buffer("cost_scale", th.ones(()))
        self.register_buffer("reg", th.full((), 0.1))
        self.register_buffer("dual_ready", th.zeros((), dtype=th.bool))
        if a["eval_noise_seed"] is None:
            eval_noise = th.zeros(self.act_dim)
        else:
            eval_noise = th.randn(self.act_dim, generator=th.Generator().manual_seed(a["eval_noise_seed"]))
        self.register_buffer("eval_noise", eval_noise)
        opt = self.optimizer_class
        self.actor.optimizer = opt(self.actor.parameters(), lr=actor_lr, **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.critic.optimizer = opt(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.value.optimizer = opt(self.value.parameters(), lr=value_lr or lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.arch)
        data.update(optimizer_class=self.optimizer_class, optimizer_kwargs=self.optimizer_kwargs)
        return data

    # ---- observations -----------------------------------------------------------------------------------

    def flatten_obs(self, obs: PyTorchObs) -> th.Tensor:
        """Flatten a (batched) observation tensor or dict of tensors to ``(n, obs_dim)``."""
        if isinstance(obs, dict):
            return th.cat([obs[k].reshape(obs[k].shape[0], -1).float() for k in sorted(obs)], dim=1)
        return obs.reshape(obs.shape[0], -1).float()

    def prepare_obs(self, obs: PyTorchObs) -> th.Tensor:
        """Flattened and standardised observations."""
        return (self.flatten_obs(obs) - self.obs_mean) / self.obs_std

    @th.no_grad()
    def set_obs_statistics(self, flat_obs: th.Tensor) -> None:
        """Standardise observations with the mean and std of ``flat_obs`` (constant features keep std 1)."""
        std = flat_obs.std(0)
        self.obs_mean.copy_(flat_obs.mean(0))
        self.obs_std.copy_(th.where(std > 1e-6, std, th.ones_like(std)))

    # ---- acting -----------------------------------------------------------------------------------------

    @th.no_grad()
    def sample_actions(self, obs_n: th.Tensor, noise: th.Tensor, use_ema: bool = True) -> th.Tensor:
        """DDIM actions (scaled space) from ``noise`` ``(n, act_dim)`` for standardised observations."""
        model = self.actor_ema if use_ema else self.actor
        return self.schedule.ddim_sample(model, obs_n, noise, self.ddim_steps)

    @th.no_grad()
    def candidate_scores(self, obs_n: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Scores ``z`` and non-negative weights for aligned (state, action) pairs, per the guidance.

        - ``"compatibility"``: ``z = u(s) + v(a) - c(s, a)`` with the dual's cost (``c = -Q / cost_scale``, possibly
          mixed with the keypoint relation cost) and weight
          ``H = z_+ / (2 eps)`` (Eq. 15). Before the dual is trained (``dual_ready`` false) the weights are
          IDQL's expectile weights ``|tau - 1(Q < V)|``, documented fallback.
        - ``"q"``: ``exp(temperature * Q / cost_scale)``; ``"advantage"``: ``exp(temperature * (Q - V) / cost_scale)``,
          both shifted by their maximum over the batch for stability.
        """
        q = self.critic.min(obs_n, actions)
        if self.guidance == "compatibility":
            if bool(self.dual_ready):
                cost = self.pair_cost(obs_n, actions) if self.pair_cost is not None else -q / self.cost_scale
                z = self.u(obs_n) + self.v(actions) - cost
                return z, th.relu(z) / (2.0 * self.reg)
            adv = q - self.value(obs_n)
            return adv, th.where(adv < 0, 1.0 - self.expectile, self.expectile).to(q.dtype)
        score = q if self.guidance == "q" else q - self.value(obs_n)
        score = self.temperature * score / self.cost_scale
        return score, th.exp(score - score.max())

    @th.no_grad()
    def select_action(self, obs_n: th.Tensor, generator: th.Generator | None = None) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """Algorithm 1's collection step: L candidates by DDIM, weighted, one drawn per state."""
        n, L = obs_n.shape[0], self.n_candidates
        noise = th.randn(n * L, self.act_dim, device=obs_n.device, generator=generator)
        obs_rep = obs_n.repeat_interleave(L, dim=0)
        cand = self.sample_actions(obs_rep, noise)
        if L == 1:
            return cand, {}
        z, w = self.candidate_scores(obs_rep, cand)
        out = resample_from_scores(z.reshape(n, L), w.reshape(n, L), generator)
        chosen = cand.reshape(n, L, self.act_dim)[th.arange(n, device=obs_n.device), out.index]
        return chosen, {"fallback": out.fallback, "probs": out.probs}

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        obs_n = self.prepare_obs(observation)
        if deterministic:
            # One DDIM sample from fixed noise: reproducible, identical before and after save/load.
            return self.sample_actions(obs_n, self.eval_noise.expand(obs_n.shape[0], -1).contiguous())
        return self.select_action(obs_n)[0]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions in the scaled space."""
        return self._predict(obs, deterministic)

    def set_training_mode(self, mode: bool) -> None:  # noqa: D102
        if getattr(self, "_mode", None) == mode:  # called at every predict: skip the module walk
            return
        for m in (self.actor, self.critic, self.value, self.u, self.v):
            m.train(mode)
        self.training = self._mode = mode


MlpPolicy = OTPRPolicy


class MultiInputPolicy(OTPRPolicy):
    """OTPR policy for dict observations (flattened by sorted key), e.g. goal-conditioned robotics tasks."""
