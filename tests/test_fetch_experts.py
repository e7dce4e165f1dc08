"""The scripted experts that record the demonstrations (otpr_sb3.benchmark.experts) solve their tasks."""

import gymnasium as gym
import numpy as np
import pytest

from otpr_sb3.benchmark.experts import MazeExpert, expert_for, run_expert
from otpr_sb3.benchmark.tasks import TASKS, get_task


@pytest.mark.parametrize("env_id", ["FetchPickAndPlace-v4", "FetchPush-v4"])
def test_noiseless_expert_succeeds_and_noise_hurts_it(env_id):
    env = gym.make(env_id)
    expert = expert_for(env_id)
    clean = run_expert(env, expert, episodes=10, noise=0.0, seed=0)
    assert clean >= 0.8, f"{env_id}: noiseless expert success {clean:.2f}"
    # Measured on 50 episodes: 0.98 -> 0.62 on FetchPush-v4 at noise 0.3; far more noise must hurt.
    assert run_expert(env, expert, episodes=10, noise=2.0, seed=0) < clean


def test_maze_expert_reaches_the_goal_and_stays():
    task = get_task("PointMaze_UMaze-v3")
    env = task.make_env()
    expert = expert_for(env)
    assert isinstance(expert, MazeExpert)
    # Success is read at the episode's last step: the expert must reach the goal and stay there.
    assert run_expert(env, expert, episodes=5, noise=0.3, seed=0, success_key=task.success_key) == 1.0
    # A random policy almost never ends on the goal.
    rng = np.random.default_rng(0)
    random = run_expert(env, lambda obs: rng.uniform(-1, 1, 2), episodes=5, noise=0.0, seed=0, success_key="success")
    assert random <= 0.4


def test_maze_expert_path_goes_around_the_wall():
    env = get_task("PointMaze_UMaze-v3").make_env()
    expert = expert_for(env)
    # In the U-maze, from the bottom-left cell (3, 1) the way to the top-left cell (1, 1) runs through (3, 2).
    assert expert._next_cell((3, 1), (1, 1)) == (3, 2)
    assert expert._next_cell((1, 1), (1, 1)) == (1, 1)


def test_unknown_task_has_no_expert():
    with pytest.raises(ValueError, match="no scripted expert"):
        expert_for("FetchSlide-v4")
    with pytest.raises(ValueError, match="needs the env"):
        expert_for("PointMaze_UMaze-v3")
    with pytest.raises(ValueError, match="benchmark tasks"):
        get_task("FetchSlide-v4")
    assert {"FetchPickAndPlace-v4", "FetchPush-v4", "PointMaze_UMaze-v3"} <= set(TASKS)


def test_noise_dims_limit_the_noise_to_those_action_dimensions():
    env = gym.make("FetchPickAndPlace-v4")
    expert = expert_for("FetchPickAndPlace-v4")
    clean = run_expert(env, expert, episodes=3, noise=0.0, seed=0)
    # No dimension noised: the noiseless rollouts, although the normal draws are still made.
    assert run_expert(env, expert, episodes=3, noise=5.0, seed=0, noise_dims=()) == clean == 1.0
    assert run_expert(env, expert, episodes=3, noise=5.0, seed=0, noise_dims=(0, 1, 2, 3)) < clean
    with pytest.raises(ValueError, match="noise_dims"):
        run_expert(env, expert, episodes=1, noise=0.3, seed=0, noise_dims=(4,))
