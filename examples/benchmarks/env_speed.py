"""Env steps per second of each task family, simulator alone and with its scripted expert, on one thread.

Meant for an idle machine (nothing else running): it measures what a run's environment costs before any learning.
For each task, ``--episodes`` episodes with uniform random actions (the simulator alone, resets included) and as many
with the task's scripted expert without noise (simulator and expert), each timed over all its steps::

    python examples/benchmarks/env_speed.py --family fetch metaworld --out-dir docs/data/env_speed
    bash scripts/run.sh robosuite python examples/benchmarks/env_speed.py --family robosuite --out-dir docs/data/env_speed
    python examples/benchmarks/env_speed.py --table docs/data/env_speed > docs/env_speed.inc

Each family's record is ``OUT_DIR/FAMILY.json`` (rows and provenance: commit, CPU, packages); ``--table`` renders the
records found in a directory as the docs' table.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from collections.abc import Callable

import numpy as np

FAMILIES = ("fetch", "metaworld", "robosuite")


def family_ids(family: str) -> list[str]:
    """Return the benchmark tasks of a family (:data:`otpr_sb3.benchmark.tasks.TASKS`)."""
    from otpr_sb3.benchmark.tasks import TASKS

    prefixes = {"fetch": "Fetch", "metaworld": "MetaWorld", "robosuite": "Robosuite"}
    if family not in prefixes:
        raise ValueError(f"`family` must be one of {FAMILIES}, got {family!r}")
    return sorted(env_id for env_id in TASKS if env_id.startswith(prefixes[family]))


def steps_per_second(env, act: Callable[[object, np.random.Generator], np.ndarray], episodes: int) -> tuple[float, int]:
    """Run ``episodes`` episodes (episode ``k`` reset with seed ``k``) and return env steps/s and the steps taken."""
    rng = np.random.default_rng(0)
    steps = 0
    t0 = time.perf_counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(act(obs, rng))
            steps += 1
            done = terminated or truncated
    return steps / (time.perf_counter() - t0), steps


def measure(env_id: str, episodes: int) -> dict[str, object]:
    """Env steps/s of one task: random actions (the simulator alone) and its scripted expert without noise."""
    from otpr_sb3.benchmark.experts import expert_for
    from otpr_sb3.benchmark.tasks import get_task

    env = get_task(env_id).make_env()  # as the harness makes it
    space = env.action_space
    expert = expert_for(env)
    low, high = space.low, space.high  # type: ignore[attr-defined]
    steps_per_second(env, lambda o, r: r.uniform(low, high).astype(np.float32), 1)  # warm-up (robosuite's JIT)
    random_rate, random_steps = steps_per_second(env, lambda o, r: r.uniform(low, high).astype(np.float32), episodes)
    expert_rate, expert_steps = steps_per_second(env, lambda o, r: np.asarray(expert(o), dtype=np.float32), episodes)
    env.close()
    return {
        "env_id": env_id,
        "episodes": episodes,
        "random_steps": random_steps,
        "random_steps_per_s": random_rate,
        "expert_steps": expert_steps,
        "expert_steps_per_s": expert_rate,
    }


def table(directory: str) -> str:
    """Render the family records in ``directory`` as an RST list-table (one row per task)."""
    from otpr_sb3.benchmark.report_rst import list_table

    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            record = json.load(f)
        for row in record["rows"]:
            rows.append(
                [
                    record["family"],
                    f"``{row['env_id']}``",
                    f"{row['random_steps_per_s']:.0f}",
                    f"{row['expert_steps_per_s']:.0f}",
                ]
            )
    headers = ["family", "task", "env steps/s, random actions", "env steps/s, scripted expert"]
    return list_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=["fetch", "metaworld"])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--table", default=None, help="print the table of the records in this directory and exit")
    args = parser.parse_args()
    if args.table:
        print(table(args.table), end="")
        return
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")
    import torch as th

    from otpr_sb3.benchmark.provenance import provenance

    th.set_num_threads(1)
    for family in args.family:
        rows = []
        for env_id in family_ids(family):
            rows.append(measure(env_id, args.episodes))
            print(json.dumps(rows[-1]), flush=True)
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            path = os.path.join(args.out_dir, f"{family}.json")
            with open(path + ".tmp", "w") as f:
                json.dump({"family": family, "args": vars(args), "rows": rows, "provenance": provenance("cpu")}, f, indent=1)
            os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
