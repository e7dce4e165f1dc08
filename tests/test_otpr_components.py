"""OTPR components: H-weighting, keypoint masks, Minari loading, resuming, learning smoke test."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from otpr_helpers import FAST, IdentityEnvBox, fast, identity_demos
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

from neural_ot.stochastic import MaskedL2Dual
from otpr_sb3 import OTPR, Demonstrations


def test_zero_compatibility_pairs_do_not_train_the_actor():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, actor_targets="replay", **FAST)
    policy = model.policy
    policy.guidance.mark_ready()
    obs = th.linspace(-1, 1, 8)[:, None]
    act = th.zeros(8, 1)
    with th.no_grad():
        policy.guidance.u.net[-1].bias.fill_(-1e6)  # u(s) very negative: H = 0 for every pair
    _, weights = policy.candidate_scores(obs, act)
    assert th.all(weights == 0)
    before = [p.clone() for p in policy.actor.parameters()]
    model.replay_buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    stats = model._actor_update()
    assert stats["h_nonzero_frac"] == 0.0
    assert all(th.equal(p, q) for p, q in zip(before, policy.actor.parameters()))


def test_fallback_weights_before_dual_is_ready():
    model = OTPR("MlpPolicy", IdentityEnvBox(), seed=0, **FAST)
    policy = model.policy
    obs, act = th.linspace(-1, 1, 16)[:, None], th.linspace(-1, 1, 16).flip(0)[:, None]
    adv, w = policy.candidate_scores(obs, act)
    with th.no_grad():
        expected_adv = policy.critic.min(obs, act) - policy.value(obs)
    th.testing.assert_close(adv, expected_adv)
    th.testing.assert_close(w, th.where(expected_adv < 0, 0.3, 0.7))  # IDQL expectile weights, tau = 0.7


def test_expert_keypoints_only_match_their_own_action():
    solver = MaskedL2Dual(0.1, batch_size=6, max_steps=1, seed=0)
    solver.setup(np.zeros((10, 2)), np.ones((10, 2)), keypoints=(np.zeros((3, 2)), np.ones((3, 2))), keypoint_mass=0.2)
    batch = solver.sample_batch(6)
    K = 3
    assert batch.mask.shape == (9, 9)
    th.testing.assert_close(batch.mask[:K, :K], th.eye(K))
    assert batch.mask[:K, K:].sum() == 0 and batch.mask[K:, :K].sum() == 0 and bool((batch.mask[K:, K:] == 1).all())
    th.testing.assert_close(batch.wx.sum(), th.tensor(1.0))
    th.testing.assert_close(batch.wx[:K].sum(), th.tensor(0.2))


def test_minari_dataset_round_trip(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = minari.DataCollector(gym.make("Pendulum-v1"))
    for ep in range(3):
        env.reset(seed=ep)
        for _ in range(10):
            env.step(env.action_space.sample())
    env.create_dataset(
        dataset_id="test/pendulum-v0",
        algorithm_name="random",
        author="tests",
        author_email="tests@example.com",
        code_permalink="https://example.com",
        eval_env="Pendulum-v1",
    )
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    demos = Demonstrations.from_minari("test/pendulum-v0", data_path=str(tmp_path))
    assert len(demos) == 30 and demos.observations.shape == (30, 3) and demos.actions.shape == (30, 1)
    np.testing.assert_array_equal(demos.next_observations[:9], demos.observations[1:10])
    model = OTPR("MlpPolicy", gym.make("Pendulum-v1"), seed=0, **FAST)
    model.pretrain("test/pendulum-v0", n_steps=5, data_path=str(tmp_path), add_to_replay_buffer=True)
    assert model.replay_buffer.size() == 30


class _StopAt(BaseCallback):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def _on_step(self):
        return self.num_timesteps < self.n


def test_resume_interrupted_run_from_checkpoint(tmp_path):
    env = IdentityEnvBox(ep_length=20)
    model = OTPR("MlpPolicy", env, seed=0, **FAST)
    demos = identity_demos()
    model.pretrain(demos, n_steps=10)  # the demonstrations go into the replay buffer first
    ckpt = CheckpointCallback(save_freq=20, save_path=str(tmp_path), name_prefix="run", save_replay_buffer=True)
    model.learn(200, callback=[ckpt, _StopAt(50)])  # "interrupted" after 50 steps
    assert model.num_timesteps == 50
    resumed = OTPR.load(tmp_path / "run_40_steps.zip", env=env)
    resumed.load_replay_buffer(tmp_path / "run_replay_buffer_40_steps.pkl")
    # SB3 calls callbacks before storing the step's transition, so the step-40 checkpoint holds 39.
    stored = len(demos) + 39
    assert resumed.num_timesteps == 40 and resumed.replay_buffer.size() == stored
    np.testing.assert_array_equal(resumed.replay_buffer.observations[:stored], model.replay_buffer.observations[:stored])
    assert th.equal(resumed.expert_obs, model.expert_obs)
    resumed.learn(60, reset_num_timesteps=False)
    assert resumed.num_timesteps == 100 and resumed.replay_buffer.size() == len(demos) + 99


def test_learning_smoke_guided_selection_beats_single_sample():
    """On the identity task, weighting L=8 candidates must pick better actions than one unguided sample."""
    env = IdentityEnvBox(ep_length=50, eps=0.1)
    kwargs = fast(dual_start=50)
    model = OTPR("MlpPolicy", env, seed=0, gradient_steps=2, **kwargs)
    model.pretrain(identity_demos(2000, noise=0.3), n_steps=800, batch_size=128, add_to_replay_buffer=True)
    model.learn(600)
    assert bool(model.policy.guidance.ready)
    obs = np.random.default_rng(1).uniform(-1, 1, (2000, 1)).astype(np.float32)
    guided, _ = model.predict(obs, deterministic=False)
    model.policy.n_candidates = 1
    single, _ = model.predict(obs, deterministic=False)
    err_guided, err_single = np.abs(guided - obs).mean(), np.abs(single - obs).mean()
    assert err_guided < 0.8 * err_single
