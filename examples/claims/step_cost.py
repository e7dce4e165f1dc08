"""The cost per env step of the chosen dual, side by side: fine-tuning steps per second from one checkpoint.

Each setting loads the same fine-tuning checkpoint (its replay buffer included), takes ``--warmup`` online steps,
then is timed over ``--steps`` online steps (collection, critic, actor and guidance updates). The settings take
turns, ``--rounds`` times, so that machine load falls on all of them alike; the record keeps every round::

    python examples/claims/step_cost.py RUN_DIR/checkpoint --out docs/data/claims/step_cost.json
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from records import write_record

import otpr_sb3.benchmark.tasks  # noqa: F401  (registers the tasks)
from otpr_sb3 import OTPR

#: name -> OTPR.load overrides. ``relation_scale`` is a guidance setting, set after loading.
SETTINGS: dict[str, dict[str, Any]] = {
    "default (reg 0.5, 48 reference actions, masked)": {},
    "H masked, reg 0.05, ref256, spread": {
        "reg": 0.05,
        "relation_weight": 0.1,
        "dual_kwargs": {"reference_actions": 256},
        "relation_scale": "spread",
    },
    "H unmasked, reg 0.05, ref256": {
        "reg": 0.05,
        "use_mask": False,
        "relation_weight": 0.0,
        "dual_kwargs": {"reference_actions": 256},
    },
}


def steps_per_second(ckpt: str, env: gym.Env, overrides: dict[str, Any], warmup: int, steps: int) -> float:
    """Online env steps per second of the checkpoint under ``overrides``, after ``warmup`` steps."""
    overrides = dict(overrides)
    scale = overrides.pop("relation_scale", None)
    model = OTPR.load(os.path.join(ckpt, "model.zip"), env=env, device="cpu", **overrides)
    if scale is not None:
        model.policy.guidance.relation_scale = scale
    model.load_replay_buffer(os.path.join(ckpt, "replay_buffer.pkl"))
    model.learn(warmup, reset_num_timesteps=False)
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    env = gym.make(args.env)
    rows = []
    for r in range(args.rounds):
        for name, overrides in SETTINGS.items():
            rate = steps_per_second(args.checkpoint, env, overrides, args.warmup, args.steps)
            rows.append({"round": r, "setting": name, "env_steps_per_s": rate})
            print(f"round {r}  {name:50s} {rate:6.2f} env steps/s", flush=True)
    medians = {name: float(np.median([x["env_steps_per_s"] for x in rows if x["setting"] == name])) for name in SETTINGS}
    write_record(args, rows, median_env_steps_per_s=medians)


if __name__ == "__main__":
    main()
