"""DSRL's noise-space env: the noise is decoded by the frozen actor's DDIM sampler, and the actor never changes."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from otpr_helpers import SMALL
from stable_baselines3 import SAC

from otpr_sb3 import OTPR, NoiseSteeringWrapper


@pytest.fixture(scope="module")
def model():
    return OTPR("MlpPolicy", "Pendulum-v1", seed=0, policy_kwargs=SMALL, learning_starts=10)


def test_zero_noise_is_the_deterministic_action_and_noise_steers(model):
    env = NoiseSteeringWrapper(gym.make("Pendulum-v1"), model.policy, magnitude=2.0)
    assert env.action_space.shape == (1,) and env.action_space.high[0] == 2.0
    obs, _ = env.reset(seed=3)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(env.decode(obs, np.zeros(1)), expected, rtol=1e-6, atol=1e-6)
    # Any noise: the policy's own DDIM image of it, unscaled to the env's action box.
    w = np.array([1.3], dtype=np.float32)
    obs_t, _ = model.policy.obs_to_tensor(obs)
    scaled = model.policy.sample_actions(model.policy.prepare_obs(obs_t), th.as_tensor(w)[None])
    np.testing.assert_allclose(env.decode(obs, w), model.policy.unscale_action(scaled.numpy()[0]), rtol=1e-6)
    decoded = [float(env.decode(obs, np.array([x]))[0]) for x in (-2.0, 0.0, 2.0)]
    assert len(set(np.round(decoded, 6))) >= 2  # the noise moves the action
    # A step sends the decoded action to the env.
    _, _, _, _, info = env.step(w)
    np.testing.assert_allclose(info["decoded_action"], env.decode(obs, w))


def test_sac_in_noise_space_leaves_the_diffusion_actor_frozen(model):
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    steered = NoiseSteeringWrapper(gym.make("Pendulum-v1"), model.policy)
    sac = SAC("MlpPolicy", steered, learning_starts=50, batch_size=32, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    sac.learn(150)
    assert sac.num_timesteps == 150
    after = model.policy.state_dict()
    assert all(th.equal(before[k], after[k]) for k in before)
    low, high = sac.action_space.low, sac.action_space.high
    actions = sac.replay_buffer.actions[: sac.replay_buffer.pos].reshape(-1)
    assert np.all(actions >= low[0] - 1e-6) and np.all(actions <= high[0] + 1e-6)


def test_bad_input_is_refused(model):
    with pytest.raises(ValueError, match="magnitude"):
        NoiseSteeringWrapper(gym.make("Pendulum-v1"), model.policy, magnitude=0.0)
    with pytest.raises(ValueError, match="spaces"):
        NoiseSteeringWrapper(gym.make("MountainCarContinuous-v0"), model.policy)
    env = NoiseSteeringWrapper(gym.make("Pendulum-v1"), model.policy)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1))
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan]))
    with pytest.raises(ValueError, match="1 finite numbers"):
        env.decode(obs, np.zeros(2))
