"""Fetch's scripted experts under the installed mujoco: does another mujoco version give the same Fetch tasks?

Meta-World pins mujoco 3.3.0 and robosuite 1.5 fails on the project's 3.11.0, so one mujoco for every task family
would be 3.3.0. This measures what that would change for Fetch: the experts' success (episode ``k`` reset with
seed ``k``) and the first observation of a fixed reset, appended to ``--out`` as one row per mujoco version::

    python examples/metaworld/fetch_on_mujoco.py --out docs/data/metaworld/fetch_on_mujoco.json
"""

from __future__ import annotations

import argparse
import json
import os

import gymnasium as gym
import gymnasium_robotics
import mujoco
import numpy as np

from otpr_sb3.benchmark.experts import pick_and_place_action, push_action, run_expert

gym.register_envs(gymnasium_robotics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    row: dict = {"mujoco": mujoco.__version__, "episodes": args.episodes, "tasks": {}}
    for env_id, expert in (("FetchPickAndPlace-v4", pick_and_place_action), ("FetchPush-v4", push_action)):
        env = gym.make(env_id)
        obs, _ = env.reset(seed=3)
        row["tasks"][env_id] = {
            "success_noise0": run_expert(env, expert, args.episodes, 0.0, 0),
            "success_noise0.3": run_expert(env, expert, args.episodes, 0.3, 0),
            "first_obs_seed3": [round(float(x), 6) for x in np.asarray(obs["observation"][:6])],
        }
    print(json.dumps(row))
    if args.out:
        rows = []
        if os.path.exists(args.out):
            with open(args.out) as f:
                rows = [r for r in json.load(f)["rows"] if r["mujoco"] != row["mujoco"]]
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"rows": sorted([*rows, row], key=lambda r: r["mujoco"])}, f, indent=1)


if __name__ == "__main__":
    main()
