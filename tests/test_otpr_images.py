"""Image observations: ``CnnPolicy``, whose NatureCNN the critic loss trains (DrQ's encoder convention)."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from otpr_sb3 import OTPR, Demonstrations
from otpr_sb3.pretraining import torch_obs
from tests.otpr_helpers import fast

SIZE = 36  # NatureCNN's smallest input


class BarImageEnv(gym.Env):
    """A vertical bar at a hidden position x in [-1, 1]; the action should be x. Channel-first uint8 images."""

    def __init__(self, horizon: int = 5):
        self.observation_space = spaces.Box(0, 255, (1, SIZE, SIZE), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.horizon = horizon

    def _obs(self) -> np.ndarray:
        img = np.zeros((1, SIZE, SIZE), np.uint8)
        col = int(round((self.x + 1) / 2 * (SIZE - 1)))
        img[0, :, max(col - 1, 0) : col + 2] = 255
        return img

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
        return self._obs(), {}

    def step(self, action):
        reward = -abs(float(action[0]) - self.x)
        self.t += 1
        self.x = float(self.np_random.uniform(-1, 1))
        return self._obs(), reward, False, self.t >= self.horizon, {}


def bar_demos(n_episodes: int = 40, noise: float = 0.1, seed: int = 0) -> Demonstrations:
    env, rng = BarImageEnv(), np.random.default_rng(seed)
    obs, act, rew, trunc, nxt = [], [], [], [], []
    for ep in range(n_episodes):
        o, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            a = np.clip([env.x + noise * rng.normal()], -1, 1).astype(np.float32)
            o2, r, te, tr, _ = env.step(a)
            obs.append(o), act.append(a), rew.append(r), trunc.append(tr), nxt.append(o2)
            o, done = o2, te or tr
    return Demonstrations.from_arrays(
        np.stack(obs), np.array(act), np.array(rew, np.float32), truncations=np.array(trunc), next_observations=np.stack(nxt)
    )


def cnn_model(**kw) -> OTPR:
    return OTPR("CnnPolicy", BarImageEnv(), **fast(dual_start=2, n_keypoints=4, **kw), seed=0, device="cpu")


def extractor_params(model: OTPR) -> list[th.Tensor]:
    return [p.detach().clone() for p in model.policy.features_extractor.parameters()]


def test_cnn_policy_trains_its_extractor_through_the_critic_only():
    model = cnn_model()
    policy = model.policy
    assert policy.trains_features and type(policy.features_extractor).__name__ == "NatureCNN"
    # The extractor's parameters belong to the critic's optimiser, and to no other.
    ids = {id(p) for p in policy.features_extractor.parameters()}
    owned = {
        name: ids & {id(p) for g in opt.param_groups for p in g["params"]}
        for name, opt in (
            ("critic", policy.critic.optimizer),
            ("actor", policy.actor.optimizer),
            ("value", policy.value.optimizer),
        )
    }
    assert owned["critic"] == ids and not owned["actor"] and not owned["value"]
    # Features for the actor, V and the guidance are detached; the critic's carry the gradient.
    obs = th.as_tensor(BarImageEnv().reset(seed=0)[0][None])
    assert not policy.prepare_obs(obs).requires_grad
    assert policy.prepare_obs(obs, grad=True).requires_grad


def test_cnn_policy_pretrains_and_fine_tunes_with_fresh_keypoint_features():
    model = cnn_model()
    demos = bar_demos()
    before = extractor_params(model)
    model.pretrain(demos, n_steps=60, batch_size=32)
    after_bc = extractor_params(model)
    assert any(not th.equal(a, b) for a, b in zip(before, after_bc)), "IQL on the demos must train the CNN"
    # Features are not standardised (their statistics move as the CNN trains).
    assert bool(model.policy.obs_stats_ready)
    assert th.equal(model.policy.obs_mean, th.zeros_like(model.policy.obs_mean))
    assert model.keypoint_raw_obs.shape == (4, 1, SIZE, SIZE) and model.keypoint_raw_obs.dtype == th.uint8

    model.learn(60)
    after_rl = extractor_params(model)
    assert any(not th.equal(a, b) for a, b in zip(after_bc, after_rl)), "fine-tuning's critic loss must train the CNN"
    assert bool(model.policy.guidance.ready)
    # The guidance's keypoints are the features of the raw keypoint images under the CNN of the last guidance update:
    # after one more update they match the current CNN exactly.
    model._guidance_update()
    expected = model.policy.prepare_obs(torch_obs(model.keypoint_raw_obs, model.device))
    th.testing.assert_close(model.policy.guidance.keypoint_obs, expected)


def test_cnn_policy_round_trips_through_save_and_load(tmp_path):
    model = cnn_model()
    model.pretrain(bar_demos(n_episodes=10), n_steps=20, batch_size=16)
    model.learn(30)
    obs = np.stack([BarImageEnv().reset(seed=s)[0] for s in range(5)])
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "cnn")
    loaded = OTPR.load(tmp_path / "cnn", env=BarImageEnv(), device="cpu")
    assert loaded.policy.trains_features
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    assert th.equal(loaded.keypoint_raw_obs, model.keypoint_raw_obs)
    with pytest.warns(UserWarning, match="replay buffer is empty"):  # the buffer is not saved with the model
        loaded.learn(10)  # fine-tuning goes on, keypoints refreshed from the saved images
    loaded._guidance_update()
    th.testing.assert_close(
        loaded.policy.guidance.keypoint_obs, loaded.policy.prepare_obs(torch_obs(loaded.keypoint_raw_obs, "cpu"))
    )


def test_behaviour_cloning_on_images_learns_the_bar_position():
    demos = bar_demos(n_episodes=60, noise=0.05)
    model = cnn_model(policy_kwargs=dict(actor_hidden_dim=64, actor_n_blocks=1, time_dim=8, critic_hidden=(32, 32)))
    env = BarImageEnv()
    xs, images = [], []
    for s in range(64):
        images.append(env.reset(seed=1000 + s)[0])
        xs.append(env.x)
    error = lambda m: float(np.mean(np.abs(m.predict(np.stack(images), deterministic=True)[0][:, 0] - np.array(xs))))  # noqa: E731
    untrained = error(model)
    model.pretrain(demos, n_steps=800, batch_size=64, critic_steps=0)
    trained = error(model)
    # A constant action scores about 0.5 on x ~ U(-1, 1); the actor must read the bar off the CNN's features.
    print(f"mean |action - x|: untrained {untrained:.3f}, after BC {trained:.3f}")
    assert trained < 0.25 < untrained, (untrained, trained)


def test_mlp_policy_keeps_standardised_fixed_features():
    from tests.otpr_helpers import IdentityEnvBox, identity_demos

    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=100), **fast(), seed=0)
    assert not model.policy.trains_features
    model.pretrain(identity_demos(), n_steps=5)
    assert not th.equal(model.policy.obs_std, th.ones_like(model.policy.obs_std))
    assert model.keypoint_raw_obs is None
    policy_copy = copy.deepcopy(model.policy)
    assert not policy_copy.prepare_obs(th.zeros(3, 1)).requires_grad


@pytest.mark.parametrize("policy", ["CnnPolicy"])
def test_cnn_policy_rejects_non_image_observations(policy):
    with pytest.raises((AssertionError, ValueError)):
        OTPR(policy, gym.make("Pendulum-v1"), **fast(), seed=0)
