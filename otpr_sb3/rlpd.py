"""RLPD (Ball et al., 2023) on SB3's SAC: a LayerNorm critic ensemble, random-subset targets, a high update ratio.

With the demonstrations in a symmetric replay buffer (:mod:`otpr_sb3.benchmark.demo_buffers`, 50/50 batches), this
is RLPD's recipe::

    RLPD("MultiInputPolicy", env, gradient_steps=4, replay_buffer_class=SymmetricDictReplayBuffer)

What differs from :class:`stable_baselines3.SAC`:

- **Critics**: ``n_critics`` (default 10) Q-networks, each with LayerNorm after every hidden linear layer.
- **Target**: the minimum over ``target_subset`` (default 2) target critics drawn at random for each update, not
  over all of them (the minimum over ten would be far too pessimistic).
- **Actor loss**: the mean over the ensemble of ``Q(s, a_pi)``, RLPD's choice.
- **Update ratio**: SB3's ``gradient_steps`` per env step (RLPD uses 20; the cost grows with it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, create_mlp
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import SACPolicy
from torch import nn
from torch.nn import functional as F


class LayerNormCritic(ContinuousCritic):
    """SB3's ``ContinuousCritic`` with LayerNorm after each hidden linear layer of every Q-network."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 10,
        share_features_extractor: bool = True,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            net_arch,
            features_extractor,
            features_dim,
            activation_fn,
            normalize_images,
            n_critics,
            share_features_extractor,
        )
        action_dim = get_action_dim(self.action_space)
        for idx in range(n_critics):  # rebuilt with LayerNorm (the parent's plain MLPs are replaced)
            layers = create_mlp(features_dim + action_dim, 1, net_arch, activation_fn, post_linear_modules=[nn.LayerNorm])
            q_net = nn.Sequential(*layers)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks[idx] = q_net


class RLPDPolicy(SACPolicy):
    """SAC's policy with a :class:`LayerNormCritic` ensemble (``n_critics`` defaults to 10)."""

    def __init__(self, *args: Any, n_critics: int = 10, **kwargs: Any) -> None:
        if n_critics < 2:
            raise ValueError(f"`n_critics` must be >= 2, got {n_critics}")
        super().__init__(*args, **{**kwargs, "n_critics": n_critics})

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:  # noqa: D102
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return LayerNormCritic(**critic_kwargs).to(self.device)


class RLPDMultiInputPolicy(RLPDPolicy):
    """:class:`RLPDPolicy` for dict observations (SB3's ``CombinedExtractor``)."""

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class RLPD(SAC):
    """SAC with RLPD's critic ensemble, random-subset targets and ensemble-mean actor loss.

    Parameters
    ----------
    policy : str or type
        ``"MlpPolicy"`` or ``"MultiInputPolicy"`` (both with the LayerNorm ensemble), or a policy class.
    env
        As for SAC.
    target_subset : int
        Target critics drawn at random for each target minimum (RLPD: 2).
    **kwargs
        :class:`stable_baselines3.SAC`'s other arguments (``gradient_steps`` sets the update ratio).
    """

    policy_aliases = {"MlpPolicy": RLPDPolicy, "MultiInputPolicy": RLPDMultiInputPolicy}  # noqa: RUF012

    def __init__(self, policy: Any, env: Any, target_subset: int = 2, **kwargs: Any) -> None:
        self.target_subset = int(target_subset)
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if not 1 <= self.target_subset <= self.critic.n_critics:
            raise ValueError(f"`target_subset` must be in [1, n_critics={self.critic.n_critics}], got {self.target_subset}")

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update with RLPD's target (random-subset minimum) and actor loss (ensemble mean)."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        ent_coefs, actor_losses, critic_losses = [], [], []
        trained = [p for group in self.critic.optimizer.param_groups for p in group["params"] if p.requires_grad]
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = data.discounts if data.discounts is not None else self.gamma
            actions_pi, log_prob = self.actor.action_log_prob(data.observations)
            log_prob = log_prob.reshape(-1, 1)
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())
            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(data.next_observations)
                subset = th.randperm(self.critic.n_critics)[: self.target_subset].tolist()
                features = self.critic_target.extract_features(data.next_observations, self.critic_target.features_extractor)
                q_in = th.cat([features, next_actions], dim=1)
                next_q = th.cat([self.critic_target.q_networks[i](q_in) for i in subset], dim=1).min(dim=1, keepdim=True)[0]
                next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
                target_q = data.rewards + (1 - data.dones) * discounts * next_q
            current = self.critic(data.observations, data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()
            actor_losses.append(self._actor_step(data.observations, actions_pi, log_prob, ent_coef, trained))
            if self._n_updates % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
            self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))

    def _actor_step(
        self, obs: Any, actions_pi: th.Tensor, log_prob: th.Tensor, ent_coef: th.Tensor, trained: list[th.Tensor]
    ) -> float:
        """One actor update on the ensemble mean; returns the loss.

        The critics' weight gradients of the actor loss would be discarded: not computing them saves a third of that
        backward pass through ten critics (the actor's gradients are bit for bit the same). Only ``trained``, what
        the critic's optimiser trains, is frozen: a features extractor shared with the actor keeps its gradient.
        """
        for p in trained:
            p.requires_grad_(False)
        try:
            q_pi = th.cat(self.critic(obs, actions_pi), dim=1).mean(dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - q_pi).mean()
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
        finally:
            for p in trained:
                p.requires_grad_(True)
        self.actor.optimizer.step()
        return actor_loss.item()
