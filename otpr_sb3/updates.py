"""OTPR's gradient updates: the IQL critic, and the actor's step on its replay or candidate targets."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.utils import polyak_update

from otpr_sb3.critics import TwinQCritic
from otpr_sb3.guidance import PolicyView


def check_finite(finite: th.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``finite`` (a boolean tensor) holds.

    On an accelerator it is asserted on the device (``torch._assert_async``): the host does not wait for it, and a
    failure surfaces at the next synchronisation.
    """
    if finite.device.type != "cpu":
        th._assert_async(finite, message)
    elif not bool(finite):
        raise ValueError(message)


def optimize(optimizer: th.optim.Optimizer, loss: th.Tensor) -> None:
    """One optimiser step on ``loss``; a non-finite loss raises instead of corrupting the networks."""
    if not bool(th.isfinite(loss)):
        raise FloatingPointError(f"OTPR loss became {float(loss)}; lower the learning rates or check rewards")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def iql_update(
    policy: PolicyView,
    critic_target: TwinQCritic,
    batch: tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor, th.Tensor],
    gamma: float,
    tau: float,
    next_actions: th.Tensor | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """One IQL step: expectile regression of V on the target critics, then the TD step of both Q networks.

    ``batch`` is ``(obs, actions, rewards, next_obs, dones)`` with prepared observations and flat rewards and dones.
    With ``next_actions`` the TD target bootstraps from the target critics' ``min(Q1, Q2)(next_obs, next_actions)``
    (a Bellman backup on the policy's actions) instead of ``V(next_obs)``.
    As in IQL, both losses use the networks before this step; the running scales take the batch's Q and Q - V.
    ``obs`` may carry the gradient of a trained features extractor: only the Q loss passes it on.
    Returns the critic and value losses, as detached 0-dim tensors (read them when logging: no synchronisation here).
    """
    obs, act, rew, next_obs, done = batch
    fixed_obs = obs.detach()
    with th.no_grad():
        q_target = critic_target.min(fixed_obs, act)
        v_next = policy.value(next_obs) if next_actions is None else critic_target.min(next_obs, next_actions)
    v = policy.value(fixed_obs)
    diff = q_target - v
    weight = th.where(diff < 0, 1.0 - policy.expectile, policy.expectile)
    value_loss = (weight * diff.square()).mean()
    optimize(policy.value.optimizer, value_loss)
    policy.scales.update(q_target, diff.detach())
    with th.no_grad():
        target = rew + (1.0 - done) * gamma * v_next
    q1, q2 = policy.critic.both(obs, act)
    critic_loss = 0.5 * ((q1 - target).square().mean() + (q2 - target).square().mean())
    optimize(policy.critic.optimizer, critic_loss)
    polyak_update(policy.critic.parameters(), critic_target.parameters(), tau)
    return critic_loss.detach(), value_loss.detach()


def sampled_next_actions(policy: Any, next_obs: th.Tensor) -> th.Tensor:
    """One DDIM sample of the acting actor per next state: the actions of ``critic_backup="policy"``'s target."""
    noise = th.randn(next_obs.shape[0], policy.act_dim, device=next_obs.device)
    return policy.sample_actions(next_obs, noise)


def actor_step(actor: th.nn.Module, actor_ema: th.nn.Module, loss: th.Tensor, ema: float) -> None:
    """Step the actor on ``loss`` and move its acting copy (EMA rate ``ema``) towards it."""
    optimize(actor.optimizer, loss)  # type: ignore[arg-type]
    polyak_update(actor.parameters(), actor_ema.parameters(), 1.0 - ema)


def candidate_targets_loss(
    policy: Any, obs_n: th.Tensor, replay_actions: th.Tensor, n_reference: int | None
) -> tuple[th.Tensor, dict[str, th.Tensor]]:
    """Score matching on the intended policy: per state, one of L candidates and the replay action, drawn by weight.

    ``policy`` is an :class:`~otpr_sb3.policies.OTPRPolicy` (its ``resample_candidates``). Returns the loss and what
    to log: the share of replay actions and of fallback draws among the targets, and of candidates with weight.
    """
    targets, out = policy.resample_candidates(obs_n, extra_actions=replay_actions, n_reference=n_reference)
    loss = policy.schedule.epsilon_loss(policy.actor, targets, obs_n)
    return loss, {
        "actor_loss": loss.detach(),
        "target_replay_frac": (out.index == policy.n_candidates).float().mean(),
        "target_fallback_frac": out.fallback.float().mean(),
        "h_nonzero_frac": (out.density > 0).float().mean(),
    }
