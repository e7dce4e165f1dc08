"""Scripted experts for gymnasium-robotics Fetch tasks, and recording their demonstrations with Minari.

Run: ``python examples/fetch_experts.py --env FetchPickAndPlace-v4 --episodes 200 --noise 0.3``
records a Minari dataset in ``outputs/minari`` (no network needed) and prints the expert's success rate.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import gymnasium as gym
import gymnasium_robotics
import numpy as np

gym.register_envs(gymnasium_robotics)


def pick_and_place_action(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Move above the object, descend while centring, close the gripper, carry the object to the goal.

    Thresholds are loose enough that Gaussian action noise (std 0.3, i.e. 1.5 cm per step) does not make
    the phases flicker.
    """
    o = obs["observation"]
    grip, obj, goal = o[0:3], o[3:6], obs["desired_goal"]
    rel = obj - grip
    width = o[9] + o[10]
    action = np.zeros(4)
    if np.linalg.norm(rel) < 0.03 and width < 0.07:  # holding the object
        action[:3] = 10.0 * (goal - obj)
        action[3] = -1.0
    elif np.linalg.norm(rel[:2]) > 0.02:  # move above the object
        action[:3] = 10.0 * (rel + np.array([0.0, 0.0, 0.05]))
        action[3] = 1.0
    elif np.linalg.norm(rel) > 0.012:  # descend, keep centring
        action[:3] = 10.0 * rel
        action[3] = 1.0
    else:  # close
        action[:3] = 10.0 * rel
        action[3] = -1.0
    return np.clip(action, -1.0, 1.0)


def push_action(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Come down behind the object on the goal's far side, then push it along the line to the goal.

    The gripper stays closed (a flat pusher). Phases switch on loose thresholds (2-3 cm) so that action noise
    does not make them flicker; off the pushing line the gripper lifts before it moves, so it does not knock the
    object sideways.
    """
    o = obs["observation"]
    grip, obj, goal = o[0:3], o[3:6], obs["desired_goal"]
    line = goal[:2] - obj[:2]
    dist = float(np.linalg.norm(line))
    u = line / dist if dist > 1e-6 else np.array([1.0, 0.0])
    behind = obj[:2] - 0.05 * u  # where the pusher starts
    rel = grip[:2] - obj[:2]
    along = float(rel @ u)  # negative: behind the object
    lateral = float(np.linalg.norm(rel - along * u))
    action = np.zeros(4)
    action[3] = -1.0
    low = obj[2]
    if along < -0.02 and lateral < 0.02 and abs(grip[2] - low) < 0.02:  # on the line, behind: push
        # Move by the object's remaining offset (slowing near the goal, so the block does not slide past),
        # corrected back onto the line.
        push = 6.0 * line - 5.0 * (rel - along * u)
        action[:2] = np.clip(push, -0.6, 0.6)
        action[2] = 10.0 * (low - grip[2])
        return np.clip(action, -1.0, 1.0)
    if np.linalg.norm(grip[:2] - behind) < 0.02:  # above the start: come down
        target = np.array([*behind, low])
    else:  # lift, then move above the start point
        high = low + 0.08
        target = np.array([*behind, high]) if grip[2] > low + 0.05 else np.array([*grip[:2], high])
    action[:3] = 10.0 * (target - grip)
    return np.clip(action, -1.0, 1.0)


EXPERTS = {"FetchPickAndPlace": pick_and_place_action, "FetchPush": push_action}


def expert_for(env_id: str) -> Any:
    """The scripted expert of a Fetch task id such as ``FetchPickAndPlace-v4``."""
    name = env_id.split("-")[0]
    if name not in EXPERTS:
        raise ValueError(f"no scripted expert for {env_id}; available: {sorted(EXPERTS)}")
    return EXPERTS[name]


class SuccessInfo(gym.Wrapper):
    """Adds ``is_success`` to ``reset``'s info: Fetch omits it, which breaks Minari's ``record_infos``."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:  # noqa: D102
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "is_success": np.array(False)}


def run_expert(env: gym.Env, expert: Any, episodes: int, noise: float, seed: int) -> float:
    """Roll out the (noisy) expert; returns the success rate."""
    rng = np.random.default_rng(seed)
    successes = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, info = False, {}
        while not done:
            action = expert(obs) + noise * rng.normal(size=4)
            obs, _, terminated, truncated, info = env.step(np.clip(action, -1, 1).astype(np.float32))
            done = terminated or truncated
        successes += int(info.get("is_success", False))
    return successes / episodes


def record(env_id: str, episodes: int, noise: float, seed: int, data_path: str) -> tuple[str, float]:
    """Record a Minari dataset of the noisy expert in ``data_path``; returns (dataset id, success rate)."""
    import minari

    os.environ["MINARI_DATASETS_PATH"] = data_path
    dataset_id = f"fetch/{env_id.split('-')[0].lower()}-noisy{round(100 * noise)}-v0"
    if dataset_id in minari.list_local_datasets():
        minari.delete_dataset(dataset_id)
    env = minari.DataCollector(SuccessInfo(gym.make(env_id)), record_infos=False)
    rate = run_expert(env, expert_for(env_id), episodes, noise, seed)
    env.create_dataset(
        dataset_id=dataset_id,
        algorithm_name=f"scripted expert + N(0, {noise}^2) noise",
        author="otpr_sb3 examples",
        author_email="otpr@example.com",
        code_permalink="https://example.com",
    )
    return dataset_id, rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-path", default="outputs/minari")
    parser.add_argument("--no-record", action="store_true", help="only measure the expert's success rate")
    args = parser.parse_args()
    if args.no_record:
        env = gym.make(args.env)
        print(f"{args.env}: success {run_expert(env, expert_for(args.env), args.episodes, args.noise, args.seed):.2f}")
    else:
        ds, rate = record(args.env, args.episodes, args.noise, args.seed, os.path.abspath(args.data_path))
        print(f"recorded {ds} in {args.data_path}: expert success {rate:.2f}")
