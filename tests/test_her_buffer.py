"""Hindsight relabelling in the symmetric buffer: future goals of the same episode, rewards from the env."""

import pickle

import gymnasium as gym
import numpy as np
import pytest

import otpr_sb3.benchmark.tasks  # noqa: F401  (registers the Fetch tasks)
from otpr_sb3.benchmark.demo_buffers import HerDictReplayBuffer, HerSymmetricDictReplayBuffer

ENV = "FetchPush-v4"


BUFFERS = [HerSymmetricDictReplayBuffer, HerDictReplayBuffer]


def _filled(her_ratio, episodes=((0, 4), (4, 7)), cls=HerSymmetricDictReplayBuffer):
    env = gym.make(ENV)
    buf = cls(20, env.observation_space, env.action_space, env_id=ENV, her_ratio=her_ratio)
    obs, _ = env.reset(seed=0)
    for start, end in episodes:
        for t in range(start, end):
            nxt = {k: v.copy() for k, v in obs.items()}
            nxt["achieved_goal"] = np.full(3, float(t))  # step t achieves goal (t, t, t)
            nxt["desired_goal"] = np.full(3, 100.0)
            last = t == end - 1
            buf.add(obs, nxt, np.zeros((1, 4)), np.array([-1.0]), np.array([0.0]), [{"TimeLimit.truncated": last}])
            obs = nxt
    return buf


@pytest.mark.parametrize("cls", BUFFERS)
def test_relabelled_goals_come_from_the_rest_of_the_episode_and_rewards_from_the_env(cls):
    np.random.seed(0)  # noqa: NPY002  (the buffer samples from numpy's global stream, as SB3's do)
    buf = _filled(her_ratio=1.0, cls=cls)
    inds = np.array([0, 1, 3, 4, 6] * 40)
    data = buf._get_samples(inds)
    goals = data.observations["desired_goal"][:, 0].numpy()
    end = np.where(inds < 4, 4, 7)
    assert np.all(goals >= inds) and np.all(goals < end)  # a future step of its own episode (itself included)
    assert np.array_equal(data.next_observations["desired_goal"][:, 0].numpy(), goals)
    compute = gym.make(ENV).unwrapped.compute_reward
    achieved = np.repeat(inds[:, None], 3, axis=1).astype(np.float64)
    expected = compute(achieved, data.observations["desired_goal"].numpy(), None)
    np.testing.assert_array_equal(data.rewards.numpy().reshape(-1), expected)
    assert set(np.unique(goals[inds == 6])) == {6.0}  # the last step's only future is itself


@pytest.mark.parametrize("cls", BUFFERS)
def test_no_relabelling_keeps_the_stored_goals_and_the_buffer_pickles(cls):
    buf = _filled(her_ratio=0.0, cls=cls)
    data = buf._get_samples(np.arange(7))
    assert np.all(data.next_observations["desired_goal"].numpy() == 100.0)
    assert np.all(data.rewards.numpy() == -1.0)
    buf.her_ratio = 1.0
    buf._get_samples(np.arange(7))  # builds the reward function
    restored = pickle.loads(pickle.dumps(buf))
    assert restored._compute_reward is None and restored._get_samples(np.arange(7)).rewards.shape == (7, 1)


@pytest.mark.parametrize("cls", BUFFERS)
def test_bad_input_is_refused(cls):
    env = gym.make(ENV)
    with pytest.raises(ValueError, match="her_ratio"):
        cls(10, env.observation_space, env.action_space, env_id=ENV, her_ratio=1.5)
    maze = gym.make("PointMaze_UMaze-v3")
    flat = gym.spaces.Dict({"observation": maze.observation_space["observation"]})
    with pytest.raises(ValueError, match="achieved_goal"):
        cls(10, flat, maze.action_space, env_id="PointMaze_UMaze-v3")


def test_otpr_takes_the_plain_hindsight_buffer_and_samples_relabelled_replay():
    """OTPR (``otpr-her``) with the plain hindsight buffer: every batch of ``sample`` is relabelled, none frozen."""
    from otpr_helpers import SMALL

    from otpr_sb3 import OTPR

    env = gym.make(ENV)
    model = OTPR(
        "MultiInputPolicy",
        env,
        buffer_size=20,
        replay_buffer_class=HerDictReplayBuffer,
        replay_buffer_kwargs={"env_id": ENV, "her_ratio": 1.0},
        policy_kwargs=SMALL,
        seed=0,
    )
    assert isinstance(model.replay_buffer, HerDictReplayBuffer) and model.replay_buffer.her_ratio == 1.0
    filled = _filled(her_ratio=1.0, cls=HerDictReplayBuffer)
    model.replay_buffer = filled
    np.random.seed(0)  # noqa: NPY002
    goals = model.replay_buffer.sample(64).observations["desired_goal"][:, 0].cpu().numpy()
    assert np.all(goals < 7) and len(np.unique(goals)) > 1  # achieved goals of the episodes, not the stored 100
