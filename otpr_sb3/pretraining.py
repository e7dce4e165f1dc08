"""OTPR's pretraining: behaviour cloning of the diffusion actor and IQL on the demonstrations."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from tqdm.auto import tqdm

from otpr_sb3.demonstrations import Demonstrations
from otpr_sb3.updates import actor_step, iql_update


def as_demonstrations(demonstrations: Any, data_path: str | None = None) -> Demonstrations:
    """Return a :class:`Demonstrations`, a ``minari.MinariDataset`` or a local Minari dataset id as :class:`Demonstrations`."""
    if isinstance(demonstrations, Demonstrations):
        return demonstrations
    if isinstance(demonstrations, str) or hasattr(demonstrations, "iterate_episodes"):
        return Demonstrations.from_minari(demonstrations, data_path)
    raise TypeError(
        "`demonstrations` must be a Demonstrations (e.g. Demonstrations.from_arrays(obs, actions, ...)), a "
        f"minari.MinariDataset or a local Minari dataset id, got {type(demonstrations).__name__}"
    )


def demonstration_tensors(policy: Any, demos: Demonstrations) -> tuple[Any, ...]:
    """Fit the policy's observation statistics on the demonstrations and return them as tensors.

    Returns ``(obs, actions, rewards, next_obs, dones)``: observations prepared, or raw (a tensor or a dict of tensors)
    when the policy trains its features extractor (they are then featurised per batch), actions scaled to
    ``[-1, 1]``, flat rewards and termination flags.
    """
    device = policy.device
    obs, next_obs = torch_obs(demos.observations, device), torch_obs(demos.next_observations, device)
    if policy.trains_features:
        policy.fit_obs_statistics(obs)  # learned features stay as they are
    else:
        features = policy.features(obs)  # featurised once: for the statistics and the prepared observations
        policy.set_obs_statistics(features)
        obs, next_obs = policy.standardize(features), policy.prepare_obs(next_obs)
    actions = th.as_tensor(policy.scale_action(demos.actions), device=device).reshape(len(demos), -1).float().clamp(-1, 1)
    rewards = th.as_tensor(demos.rewards, device=device).float()
    dones = th.as_tensor(demos.terminations, device=device).float()
    return obs, actions, rewards, next_obs, dones


def torch_obs(obs: Any, device: th.device | str) -> Any:
    """Observations (an array, a tensor or a dict of them) as tensors on ``device``, dtype kept (images stay uint8)."""
    if isinstance(obs, dict):
        return {k: torch_obs(v, device) for k, v in obs.items()}
    return th.as_tensor(obs if isinstance(obs, th.Tensor) else np.asarray(obs), device=device)


def take_obs(obs: Any, idx: th.Tensor) -> Any:
    """Rows ``idx`` of observations given as a tensor or a dict of tensors."""
    if isinstance(obs, dict):
        return {k: v[idx] for k, v in obs.items()}
    return obs[idx]


def behaviour_cloning(
    policy: Any,
    data: tuple[th.Tensor, ...],
    n_steps: int,
    critic_steps: int,
    batch_size: int,
    seed: int,
    ema: float,
    gamma: float,
    tau: float,
    progress_bar: bool = False,
) -> None:
    """``n_steps`` score-matching steps of the actor and ``critic_steps`` IQL steps on the same seeded minibatches.

    ``data`` is :func:`demonstration_tensors`'s; raw observations are featurised per batch (the critic's with the
    gradient that trains the extractor).
    """
    obs, actions, rewards, next_obs, dones = data
    raw = policy.trains_features
    gen = th.Generator(device="cpu").manual_seed(seed)
    policy.set_training_mode(True)
    for step in tqdm(range(max(n_steps, critic_steps)), disable=not progress_bar, desc="pretrain"):
        idx = th.randint(len(actions), (batch_size,), generator=gen).to(actions.device)
        obs_b = policy.prepare_obs(take_obs(obs, idx), grad=step < critic_steps) if raw else obs[idx]
        if step < n_steps:
            loss = policy.schedule.epsilon_loss(policy.actor, actions[idx], obs_b.detach())
            actor_step(policy.actor, policy.actor_ema, loss, ema)
        if step < critic_steps:
            next_b = policy.prepare_obs(take_obs(next_obs, idx)) if raw else next_obs[idx]
            batch = (obs_b, actions[idx], rewards[idx], next_b, dones[idx])
            iql_update(policy, policy.critic_target, batch, gamma, tau)
