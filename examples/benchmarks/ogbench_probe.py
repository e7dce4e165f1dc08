"""Can OGBench's manipulation oracles give this harness demonstrations? A probe, run in a venv of its own.

OGBench is not a dependency of the project (its ``dm_control`` would sit beside the project's pinned mujoco), so the
probe runs in a throwaway venv::

    python3 -m venv /tmp/ogvenv
    /tmp/ogvenv/bin/pip install ogbench==1.2.2 mujoco==3.11.0
    /tmp/ogvenv/bin/python examples/benchmarks/ogbench_probe.py > docs/data/ogbench_probe.json

It makes ``cube-single-v0`` in its evaluation mode (``mode="task"``) and checks what the shipped Markov oracle reads
from ``info``, then runs the oracle in the mode it was written for (``mode="data_collection"``, a random target each
episode) and reports its success and env steps/s.
"""

from __future__ import annotations

import json
import sys
import time

import gymnasium as gym
import numpy as np
import ogbench
import ogbench.manipspace  # noqa: F401  (registers the manipulation envs)
from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle


def main(episodes: int = 10, max_steps: int = 500) -> None:
    """Print the probe's record as JSON."""
    task_env = gym.make("cube-single-v0")
    _, info = task_env.reset(seed=0, options={"task_id": 1})
    privileged = sorted(k for k in info if k.startswith("privileged/"))
    env = gym.make("cube-single-v0", mode="data_collection", max_episode_steps=max_steps)
    successes, steps, t0 = [], 0, time.perf_counter()
    for ep in range(episodes):
        ob, info = env.reset(seed=ep)
        oracle = CubeMarkovOracle(env=env)
        oracle.reset(ob, info)
        success = False
        for _ in range(max_steps):
            ob, _, terminated, truncated, info = env.step(np.clip(oracle.select_action(ob, info), -1, 1))
            steps += 1
            success = success or bool(info.get("success"))
            if terminated or truncated:
                break
        successes.append(success)
    record = {
        "ogbench": getattr(ogbench, "__version__", "1.2.2"),
        "mujoco": __import__("mujoco").__version__,
        "observation_dim": int(np.prod(env.observation_space.shape)),
        "action_dim": int(np.prod(env.action_space.shape)),
        "task_mode_privileged_keys": privileged,
        "oracle_success": float(np.mean(successes)),
        "episodes": episodes,
        "env_steps_per_s": steps / (time.perf_counter() - t0),
    }
    json.dump(record, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
