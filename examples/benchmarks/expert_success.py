"""The scripted experts of the Meta-World or robosuite tasks: success, episode length and env steps/s by noise.

For each task and action-noise std, ``--episodes`` episodes (episode ``k`` reset with seed ``k``) of the expert,
with the harness's success rule (the episode ends on its first success) and the task's noise dimensions (robosuite:
position and gripper). The env steps per second are of the simulator and the expert together, one thread, timed
over all the task's episodes::

    python examples/benchmarks/expert_success.py --out docs/data/metaworld/experts.json
    bash scripts/run.sh robosuite python examples/benchmarks/expert_success.py --family robosuite \
        --noises 0 0.3 0.6 1.0 --all-dims 0.3 --out docs/data/robosuite/experts.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import gymnasium as gym
import numpy as np

from otpr_sb3.benchmark.experts import expert_for
from otpr_sb3.benchmark.metaworld_envs import METAWORLD_IDS
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.robosuite_envs import ROBOSUITE_IDS
from otpr_sb3.benchmark.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["metaworld", "robosuite"], default="metaworld")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--noises", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.75, 1.0])
    parser.add_argument(
        "--all-dims", type=float, nargs="*", default=[], help="also these noises on every action dimension (rows 'all')"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for env_id in sorted(METAWORLD_IDS if args.family == "metaworld" else ROBOSUITE_IDS):
        env = gym.make(env_id)
        expert = expert_for(env)
        low = env.action_space.low  # type: ignore[attr-defined]
        dims = get_task(env_id).noise_dims
        task_mask = np.ones(low.shape) if dims is None else np.isin(np.arange(low.size), dims).astype(float)
        settings = [(noise, "task", task_mask) for noise in args.noises]
        settings += [(noise, "all", np.ones(low.shape)) for noise in args.all_dims]
        for noise, noised, mask in settings:
            rng = np.random.default_rng(0)
            lengths, wins, steps = [], 0, 0
            t0 = time.perf_counter()
            for ep in range(args.episodes):
                obs, _ = env.reset(seed=ep)
                done, n, info = False, 0, {}
                while not done:
                    action = np.clip(expert(obs) + mask * noise * rng.normal(size=low.shape), -1.0, 1.0).astype(np.float32)
                    obs, _, terminated, truncated, info = env.step(action)
                    n += 1
                    done = terminated or truncated
                steps += n
                if info["success"]:
                    wins += 1
                    lengths.append(n)
            rate = steps / (time.perf_counter() - t0)
            row = {
                "env_id": env_id,
                "noise": noise,
                "noise_dims": noised,  # the task's noise dimensions, or every dimension
                "episodes": args.episodes,
                "success": wins / args.episodes,
                "length_median": float(np.median(lengths)) if lengths else None,
                "length_max": int(max(lengths)) if lengths else None,
                "env_steps_per_s": rate,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "provenance": provenance("cpu")}, f, indent=1)


if __name__ == "__main__":
    main()
