"""Every bad setting of OTPR, its policy and Demonstrations fails when the object is built, naming the argument."""

import numpy as np
import pytest
from otpr_helpers import FAST, IdentityEnvBox, PointGoalEnv, fast, identity_demos
from stable_baselines3.common.noise import NormalActionNoise

from otpr_sb3 import OTPR, Demonstrations, add_demonstrations


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dual_freq": 0}, "`dual_freq` must be an integer >= 1, got 0"),
        ({"policy_delay": 0}, "`policy_delay` must be an integer >= 1, got 0"),
        ({"tau": -1}, r"`tau` must be a finite number in \(0, 1\], got -1"),
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1"),
        ({"dual_kwargs": {"learning_rate": -1}}, r"`dual_kwargs\['learning_rate'\]` must be a finite number in"),
        ({"dual_kwargs": {"lr": 1e-3}}, r"`dual_kwargs` has unknown keys \['lr'\]"),
        ({"actor_kwargs": {"ema": 1.0}}, r"`actor_kwargs\['ema'\]` must be a finite number in"),
        ({"gamma": 2}, r"`gamma` must be a finite number in \[0, 1\]"),
        ({"dual_start": -3}, "`dual_start` must be an integer >= 0"),
        ({"learning_rate": float("nan")}, "`learning_rate` must be a finite number"),
        ({"reg": 0.0}, "`reg`"),
        ({"dual_kwargs": {"method": "newton"}}, r"`dual_kwargs\['method'\]` must be one of"),
        ({"dual_kwargs": {"n_keypoints": 2.5}}, r"`dual_kwargs\['n_keypoints'\]` must be an integer"),
        ({"use_mask": "yes"}, "`use_mask` must be one of"),
        ({"policy_kwargs": {"guidance": "q", "guidance_kwargs": {"temperature": -1}}}, "`temperature` must be positive"),
        ({"policy_kwargs": {"guidance_kwargs": {"temperature": 1}}}, "not parameters of the 'compatibility' guidance"),
        ({"policy_kwargs": {"guidance_kwargs": {"reg": 0.3}}, "reg": 0.2}, "given both to OTPR and in `guidance_kwargs`"),
        ({"policy_kwargs": {"time_dim": 3}}, "`time_dim` must be even"),
        ({"policy_kwargs": {"critic_hidden": []}}, "`critic_hidden` must be a non-empty sequence"),
        ({"policy_kwargs": {"n_candidates": 0}}, r"`n_candidates` must be an integer >= 1 \(L\)"),
        ({"policy_kwargs": {"ddim_steps": 30}}, r"`ddim_steps` must be in \[1, n_timesteps=20\]"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OTPR("MlpPolicy", IdentityEnvBox(ep_length=10), **kwargs)


class _CountingNoise(NormalActionNoise):
    calls = 0

    def __call__(self):
        self.calls += 1
        return super().__call__()


def test_action_noise_is_added_to_collected_actions_only():
    noise = _CountingNoise(np.zeros(1), np.full(1, 0.5))
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=10), action_noise=noise, seed=0, **FAST)
    model.pretrain(identity_demos(), n_steps=5)
    model.learn(20)
    assert noise.calls == 20  # once per collected step (a pretrained actor acts from the first step)
    obs = np.linspace(-1, 1, 5, dtype=np.float32)[:, None]
    first, _ = model.predict(obs, deterministic=True)
    again, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(first, again)
    assert noise.calls == 20


def test_demonstrations_are_checked_when_built():
    obs = np.zeros((10, 1), np.float32)
    with pytest.raises(ValueError, match="next_observations contain NaN"):
        Demonstrations.from_arrays(obs, np.zeros(10), next_observations=np.full((10, 1), np.nan))
    with pytest.raises(ValueError, match="no transitions"):
        Demonstrations.from_arrays(obs[:1], np.zeros(1))
    with pytest.raises(ValueError, match="`rewards` has 3 entries, expected 10"):
        Demonstrations(obs, np.zeros((10, 1)), np.zeros(3), obs, np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="`next_observations` has 9 rows but `actions` has 10"):
        Demonstrations(obs, np.zeros((10, 1)), np.zeros(10), obs[:9], np.zeros(10), np.zeros(10))
    with pytest.raises(TypeError, match="`observations` must be an array or a dict"):
        Demonstrations(list(obs), np.zeros((10, 1)), np.zeros(10), obs, np.zeros(10), np.zeros(10))


def test_actions_outside_the_bounds_are_refused_unless_clipped_and_both_paths_agree():
    env = IdentityEnvBox(ep_length=10)
    demos = identity_demos(50)
    wide = Demonstrations.from_arrays(
        demos.observations, 10 * demos.actions, demos.rewards, next_observations=demos.next_observations
    )
    model = OTPR("MlpPolicy", env, seed=0, **FAST)
    with pytest.raises(ValueError, match="leave the action space's bounds.*clipped"):
        model.pretrain(wide, n_steps=2)
    with pytest.raises(ValueError, match="leave the action space's bounds"):
        add_demonstrations(model.replay_buffer, wide, env.action_space)
    clipped = wide.clipped(env.action_space)
    model.pretrain(clipped, n_steps=2)  # into the replay buffer too, by default
    stored = model.replay_buffer.actions[: len(clipped), 0]
    np.testing.assert_allclose(stored, model.policy.scale_action(clipped.actions), atol=1e-6)
    assert stored.min() >= -1 and stored.max() <= 1


def test_pretrain_names_a_wrong_demonstrations_argument():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=10), seed=0, **FAST)
    with pytest.raises(TypeError, match="`demonstrations` must be a Demonstrations"):
        model.pretrain((np.zeros((5, 1)), np.zeros((5, 1))))


def test_a_nan_observation_is_refused_instead_of_acted_on():
    # Before: a NaN observation gave a NaN action, silently (SB3's predict does not look).
    env = IdentityEnvBox()
    model = OTPR("MlpPolicy", env, **FAST, seed=0, device="cpu")
    obs, _ = env.reset(seed=0)
    assert np.isfinite(model.predict(obs, deterministic=True)[0]).all()
    for deterministic in (True, False):
        with pytest.raises(ValueError, match=r"the observation \('observation'\) contains NaN or infinite values"):
            model.predict(np.full_like(obs, np.nan), deterministic=deterministic)
    goal_env = PointGoalEnv()  # dict observations: the key is named
    goal_model = OTPR("MultiInputPolicy", goal_env, **fast(), seed=0, device="cpu")
    goal_obs, _ = goal_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"the observation \('desired_goal'\) contains NaN"):
        goal_model.predict({**goal_obs, "desired_goal": goal_obs["desired_goal"] * np.inf})
