"""Hindsight relabelling in the symmetric buffer: future goals of the same episode, rewards from the env."""

import pickle

import gymnasium as gym
import numpy as np
import pytest

import otpr_sb3.benchmark.tasks  # noqa: F401  (registers the Fetch tasks)
from otpr_sb3.benchmark.demo_buffers import HerSymmetricDictReplayBuffer

ENV = "FetchPush-v4"


def _filled(her_ratio, episodes=((0, 4), (4, 7))):
    env = gym.make(ENV)
    buf = HerSymmetricDictReplayBuffer(20, env.observation_space, env.action_space, env_id=ENV, her_ratio=her_ratio)
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


def test_relabelled_goals_come_from_the_rest_of_the_episode_and_rewards_from_the_env():
    np.random.seed(0)  # noqa: NPY002  (the buffer samples from numpy's global stream, as SB3's do)
    buf = _filled(her_ratio=1.0)
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


def test_no_relabelling_keeps_the_stored_goals_and_the_buffer_pickles():
    buf = _filled(her_ratio=0.0)
    data = buf._get_samples(np.arange(7))
    assert np.all(data.next_observations["desired_goal"].numpy() == 100.0)
    assert np.all(data.rewards.numpy() == -1.0)
    buf.her_ratio = 1.0
    buf._get_samples(np.arange(7))  # builds the reward function
    restored = pickle.loads(pickle.dumps(buf))
    assert restored._compute_reward is None and restored._get_samples(np.arange(7)).rewards.shape == (7, 1)


def test_bad_input_is_refused():
    env = gym.make(ENV)
    with pytest.raises(ValueError, match="her_ratio"):
        HerSymmetricDictReplayBuffer(10, env.observation_space, env.action_space, env_id=ENV, her_ratio=1.5)
    maze = gym.make("PointMaze_UMaze-v3")
    flat = gym.spaces.Dict({"observation": maze.observation_space["observation"]})
    with pytest.raises(ValueError, match="achieved_goal"):
        HerSymmetricDictReplayBuffer(10, flat, maze.action_space, env_id="PointMaze_UMaze-v3")
