"""RLPD: a LayerNorm critic ensemble, targets from a random pair of it, the ensemble mean in the actor loss."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from torch import nn

from otpr_sb3.benchmark.demo_buffers import SymmetricReplayBuffer
from otpr_sb3.rlpd import RLPD, LayerNormCritic

KW = dict(learning_starts=20, batch_size=16, policy_kwargs=dict(net_arch=[32, 32]), seed=0)


def test_the_ensemble_has_layer_norm_and_ten_critics():
    model = RLPD("MlpPolicy", "Pendulum-v1", **KW)
    assert isinstance(model.critic, LayerNormCritic) and model.critic.n_critics == 10
    for q in model.critic.q_networks:
        kinds = [type(m) for m in q]
        assert kinds.count(nn.LayerNorm) == 2 and kinds.count(nn.Linear) == 3  # after each hidden linear layer
    assert len(model.critic(th.zeros(4, 3), th.zeros(4, 1))) == 10
    assert sum(1 for _ in model.critic.parameters()) == 10 * 10  # registered: optimised and saved


def test_target_is_the_minimum_of_a_random_subset(monkeypatch):
    model = RLPD("MlpPolicy", "Pendulum-v1", gradient_steps=1, **KW)
    model.learn(25)  # fill the buffer
    picked = []
    real = th.randperm
    monkeypatch.setattr(th, "randperm", lambda n: (picked.append(n), real(n))[1])
    model.train(gradient_steps=3, batch_size=8)
    assert picked == [10, 10, 10]  # one subset drawn per update, over the whole ensemble


def test_learns_with_a_symmetric_buffer_and_a_high_update_ratio_and_round_trips(tmp_path):
    model = RLPD("MlpPolicy", "Pendulum-v1", gradient_steps=4, replay_buffer_class=SymmetricReplayBuffer, **KW)
    model.learn(60)
    assert model._n_updates == 4 * (60 - 20)  # `gradient_steps` per env step after learning starts
    model.save(tmp_path / "rlpd.zip")
    loaded = RLPD.load(tmp_path / "rlpd.zip")
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert isinstance(loaded.critic, LayerNormCritic) and isinstance(loaded.replay_buffer, ReplayBuffer)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="target_subset"):
        RLPD("MlpPolicy", "Pendulum-v1", target_subset=11, **KW)
    with pytest.raises(ValueError, match="n_critics"):
        RLPD("MlpPolicy", "Pendulum-v1", **{**KW, "policy_kwargs": dict(net_arch=[32], n_critics=1)})


def test_the_actor_update_leaves_the_critics_gradients_alone():
    """The actor loss's backward computes no critic weight gradients (they would be discarded) and the critics
    are trainable again afterwards."""
    model = RLPD("MlpPolicy", "Pendulum-v1", gradient_steps=1, **KW)
    model.learn(25)
    after_critic_step = {}
    step = model.critic.optimizer.step

    def record(*args, **kwargs):
        out = step(*args, **kwargs)
        after_critic_step.update({n: p.grad.clone() for n, p in model.critic.named_parameters()})
        return out

    model.critic.optimizer.step = record
    model.train(gradient_steps=1, batch_size=8)
    assert after_critic_step and all(p.requires_grad for p in model.critic.parameters())
    for name, p in model.critic.named_parameters():
        assert th.equal(p.grad, after_critic_step[name]), name  # nothing added by the actor loss
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.actor.parameters())


def test_a_features_extractor_shared_with_the_actor_keeps_the_actor_losss_gradient():
    """With ``share_features_extractor=True`` the critic's optimiser does not train the extractor, so it is not frozen
    for the actor loss: the actor's gradient reaches it."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class Linear(BaseFeaturesExtractor):
        def __init__(self, observation_space, features_dim=8):
            super().__init__(observation_space, features_dim)
            self.net = nn.Linear(observation_space.shape[0], features_dim)

        def forward(self, obs):
            return self.net(obs)

    kwargs = dict(net_arch=[32, 32], share_features_extractor=True, features_extractor_class=Linear)
    model = RLPD("MlpPolicy", "Pendulum-v1", gradient_steps=1, **{**KW, "policy_kwargs": kwargs})
    model.learn(25)
    extractor = model.actor.features_extractor
    assert extractor is model.critic.features_extractor
    extractor.zero_grad(set_to_none=True)
    model.train(gradient_steps=1, batch_size=8)
    assert all(p.requires_grad for p in extractor.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in extractor.parameters())
