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


def demonstration_tensors(policy: Any, demos: Demonstrations) -> tuple[th.Tensor, ...]:
    """Fit the policy's observation statistics on the demonstrations and return them as prepared tensors.

    Returns ``(obs, actions, rewards, next_obs, dones)``: prepared observations, actions scaled to ``[-1, 1]``, flat
    rewards and termination flags.
    """
    device = policy.device

    def features(obs: Any) -> th.Tensor:
        if isinstance(obs, dict):
            return policy.features({k: th.as_tensor(np.asarray(v), device=device) for k, v in obs.items()})
        return policy.features(th.as_tensor(np.asarray(obs), device=device))

    obs = features(demos.observations)
    policy.set_obs_statistics(obs)
    actions = th.as_tensor(policy.scale_action(demos.actions), device=device).reshape(len(demos), -1).float().clamp(-1, 1)
    rewards = th.as_tensor(demos.rewards, device=device).float()
    dones = th.as_tensor(demos.terminations, device=device).float()
    return policy.standardize(obs), actions, rewards, policy.standardize(features(demos.next_observations)), dones


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
    """``n_steps`` score-matching steps of the actor and ``critic_steps`` IQL steps on the same seeded minibatches."""
    obs_n, actions, rewards, next_n, dones = data
    gen = th.Generator(device="cpu").manual_seed(seed)
    policy.set_training_mode(True)
    for step in tqdm(range(max(n_steps, critic_steps)), disable=not progress_bar, desc="pretrain"):
        idx = th.randint(len(actions), (batch_size,), generator=gen).to(actions.device)
        if step < n_steps:
            loss = policy.schedule.epsilon_loss(policy.actor, actions[idx], obs_n[idx])
            actor_step(policy.actor, policy.actor_ema, loss, ema)
        if step < critic_steps:
            batch = (obs_n[idx], actions[idx], rewards[idx], next_n[idx], dones[idx])
            iql_update(policy, policy.critic_target, batch, gamma, tau)
