"""IBRL: imitation-bootstrapped reinforcement learning (Hu et al., 2023) on SB3's TD3.

A frozen imitation policy (here a pretrained diffusion actor) and a TD3 actor both propose an action; the critic
picks the better one, for acting and for the bootstrap target::

    il = OTPR.load("pretrained.zip").policy
    IBRL("MultiInputPolicy", env, il_policy=il).learn(30_000)

Acting: ``argmax`` over ``{a_IL(s), a_RL(s) + noise}`` of ``min(Q1, Q2)`` (greedy, IBRL's hard selection); before
``learning_starts`` the imitation proposal alone, with the same exploration noise. Target: ``max`` over
``{a_IL(s'), a_RL_target(s') + clipped noise}`` of the target critics' ``min(Q1, Q2)``. The TD3 actor and the
critics train as TD3's; the imitation policy never changes and is saved with the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from otpr_sb3.policies import OTPRPolicy


class IBRL(TD3):
    """TD3 whose actions and bootstrap targets are the critic's pick between it and a frozen imitation policy.

    Parameters
    ----------
    policy, env
        As for :class:`stable_baselines3.TD3`.
    il_policy : OTPRPolicy
        Required. The imitation policy: its deterministic action (DDIM from its fixed evaluation noise) is the imitation
        proposal. Its observation and action spaces must be ``env``'s.
    exploration_std : float
        Std of the Gaussian exploration noise on the scaled action (``[-1, 1]``), used when ``action_noise``
        is not given.
    **kwargs
        :class:`stable_baselines3.TD3`'s other arguments.
    """

    def __init__(
        self, policy: Any, env: Any, il_policy: OTPRPolicy | None = None, exploration_std: float = 0.1, **kwargs: Any
    ) -> None:
        if not exploration_std >= 0:
            raise ValueError(f"`exploration_std` must be >= 0, got {exploration_std!r}")
        self.il_policy = il_policy
        self.exploration_std = float(exploration_std)
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        if not isinstance(self.il_policy, OTPRPolicy):  # `load` restores it before setting up
            raise TypeError(f"`il_policy` must be an OTPRPolicy, got {type(self.il_policy).__name__}")
        super()._setup_model()
        if self.observation_space != self.il_policy.observation_space or self.action_space != self.il_policy.action_space:
            raise ValueError("`il_policy` must have the env's observation and action spaces")
        self.il_policy = self.il_policy.to(self.device)
        self.il_policy.set_training_mode(False)
        for p in self.il_policy.parameters():
            p.requires_grad_(False)
        if self.action_noise is None and self.exploration_std > 0:
            n = int(np.prod(self.action_space.shape))  # type: ignore[arg-type]
            self.action_noise = NormalActionNoise(np.zeros(n), self.exploration_std * np.ones(n))

    @th.no_grad()
    def il_actions(self, obs: PyTorchObs) -> th.Tensor:
        """Return the imitation proposal (scaled action space) for a batch of observations."""
        il = self.il_policy
        assert il is not None  # checked in _setup_model
        obs_n = il.prepare_obs(obs)
        return il.sample_actions(obs_n, il.eval_noise.expand(obs_n.shape[0], -1).contiguous())

    @staticmethod
    def _pick(critic: ContinuousCritic, obs: PyTorchObs, proposals: list[th.Tensor]) -> tuple[th.Tensor, th.Tensor]:
        """Per row, the proposal with the highest ``min(Q1, Q2)``, and that value."""
        values = th.cat([th.min(th.cat(critic(obs, a), dim=1), dim=1, keepdim=True)[0] for a in proposals], dim=1)
        best = values.argmax(dim=1)
        stacked = th.stack(proposals, dim=1)  # (n, proposals, act_dim)
        return stacked[th.arange(len(best)), best], values.max(dim=1, keepdim=True)[0]

    @th.no_grad()
    def select(self, obs: PyTorchObs, rl_actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Return the critic's pick between the imitation proposal and ``rl_actions``, and where it was the former."""
        il = self.il_actions(obs)
        chosen, _ = self._pick(self.critic, obs, [il, rl_actions])
        return chosen, (chosen == il).all(dim=1)

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._last_obs is not None, "self._last_obs was not set"
        obs, _ = self.policy.obs_to_tensor(self._last_obs)
        il = self.il_actions(obs)
        if self.num_timesteps < learning_starts:
            scaled = il.cpu().numpy()
            if action_noise is not None:
                scaled = np.clip(scaled + action_noise(), -1, 1)
        else:
            with th.no_grad():
                rl = self.actor(obs).cpu().numpy()
            if action_noise is not None:
                rl = np.clip(rl + action_noise(), -1, 1)
            chosen, _ = self.select(obs, th.as_tensor(rl, device=self.device, dtype=il.dtype))
            scaled = chosen.cpu().numpy()
        return self.policy.unscale_action(scaled), scaled

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Return the critic's pick between the imitation and the TD3 actor's deterministic actions (unscaled)."""
        self.policy.set_training_mode(False)
        obs, vectorized = self.policy.obs_to_tensor(observation)
        with th.no_grad():
            chosen, _ = self.select(obs, self.actor(obs))
        action = self.policy.unscale_action(chosen.cpu().numpy())
        return (action if vectorized else action[0]), state

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """TD3's update with IBRL's target: the better of the imitation and the target actor's next actions."""
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        actor_losses, critic_losses, il_share = [], [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = data.discounts if data.discounts is not None else self.gamma
            with th.no_grad():
                noise = data.actions.clone().normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                rl_next = (self.actor_target(data.next_observations) + noise).clamp(-1, 1)
                il_next = self.il_actions(data.next_observations)
                _, next_q = self._pick(self.critic_target, data.next_observations, [il_next, rl_next])
                target_q = data.rewards + (1 - data.dones) * discounts * next_q
                rl_q = th.min(th.cat(self.critic_target(data.next_observations, rl_next), dim=1), dim=1)[0]
                il_share.append(float((next_q.squeeze(1) > rl_q).float().mean()))
            current = self.critic(data.observations, data.actions)
            critic_loss = sum(F.mse_loss(q, target_q) for q in current)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()
            if self._n_updates % self.policy_delay == 0:
                actor_loss = -self.critic.q1_forward(data.observations, self.actor(data.observations)).mean()
                actor_losses.append(actor_loss.item())
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if actor_losses:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/il_target_share", np.mean(il_share))
