"""IBRL: the critic picks between the frozen imitation policy and TD3's actor, for acting and for the target."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from otpr_helpers import SMALL

from otpr_sb3 import IBRL, OTPR

KW = dict(learning_starts=30, batch_size=16, policy_kwargs=dict(net_arch=[32, 32]), seed=0)


@pytest.fixture(scope="module")
def il():
    return OTPR("MlpPolicy", "Pendulum-v1", seed=0, policy_kwargs=SMALL).policy


def test_pick_takes_the_proposal_with_the_higher_min_q():
    def critic(obs, a):  # Q1 = sum(a), Q2 = 2 sum(a) - 1: min is Q2 below 1, Q1 above
        q = a.sum(1, keepdim=True)
        return q, 2 * q - 1

    a = th.tensor([[0.2], [0.9], [-0.5]])
    b = th.tensor([[0.4], [0.3], [-0.6]])
    chosen, value = IBRL._pick(critic, None, [a, b])
    mins = lambda x: th.minimum(x, 2 * x - 1)  # noqa: E731
    expected = th.where(mins(a) >= mins(b), a, b)
    assert th.equal(chosen, expected) and th.allclose(value, th.maximum(mins(a), mins(b)))


def test_acting_and_the_target_use_the_pick_and_the_imitation_policy_stays_frozen(il):
    model = IBRL("MlpPolicy", "Pendulum-v1", il_policy=il, exploration_std=0.0, **KW)
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    obs_t, _ = model.policy.obs_to_tensor(obs)
    il_a, rl_a = model.il_actions(obs_t), model.actor(obs_t).detach()
    q = lambda a: th.min(th.cat(model.critic(obs_t, a), dim=1), dim=1)[0]  # noqa: E731
    chosen, from_il = model.select(obs_t, rl_a)
    assert th.equal(from_il, q(il_a) >= q(rl_a)) and th.equal(chosen[from_il], il_a[from_il])
    action, _ = model.predict(obs)
    np.testing.assert_allclose(action, model.policy.unscale_action(chosen.numpy()), rtol=1e-6)
    # Before learning starts, the imitation proposal acts alone (no noise here). Compared on the same
    # one-row batch: a matmul's rounding can depend on the batch size (it did on the CI machine's CPU).
    model._last_obs = obs[:1]
    unscaled, scaled = model._sample_action(learning_starts=30)
    np.testing.assert_allclose(scaled, model.il_actions(obs_t[:1]).numpy(), rtol=1e-6)
    before = {k: v.clone() for k, v in il.state_dict().items()}
    model.learn(80)
    assert all(th.equal(before[k], v) for k, v in il.state_dict().items())
    share = model.logger.name_to_value["train/il_target_share"]  # how often the imitation action set the target
    assert 0.0 <= share <= 1.0


def test_save_load_round_trip(il, tmp_path):
    model = IBRL("MlpPolicy", "Pendulum-v1", il_policy=il, **KW)
    model.learn(60)
    model.save(tmp_path / "ibrl.zip")
    loaded = IBRL.load(tmp_path / "ibrl.zip")
    obs = np.stack([model.observation_space.sample() for _ in range(5)])
    np.testing.assert_allclose(loaded.predict(obs)[0], model.predict(obs)[0], rtol=1e-6)
    assert all(th.equal(a, b) for a, b in zip(loaded.il_policy.state_dict().values(), il.state_dict().values()))


def test_bad_input_is_refused(il):
    with pytest.raises(TypeError, match="il_policy"):
        IBRL("MlpPolicy", "Pendulum-v1", **KW)
    with pytest.raises(ValueError, match="exploration_std"):
        IBRL("MlpPolicy", "Pendulum-v1", il_policy=il, exploration_std=-1.0, **KW)
    with pytest.raises(ValueError, match="spaces"):
        IBRL("MlpPolicy", gym.make("MountainCarContinuous-v0"), il_policy=il, **KW)
