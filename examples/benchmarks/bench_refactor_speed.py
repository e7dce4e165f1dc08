"""OTPR fine-tuning speed of this checkout against an earlier commit, in one process.

The package of ``--before`` (a git commit) is copied out of the repository and imported under another name
(``otpr_sb3_before``), so both versions run side by side on FetchPickAndPlace-v4 with the same demonstrations, in
alternating rounds. Prints env steps per second per round, their median ratio, and one-observation latencies::

    python examples/benchmarks/bench_refactor_speed.py --before 8b621de --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch as th

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_otpr_speed import ENV, expert_demos, latency_ms  # noqa: E402

from otpr_sb3 import OTPR  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def import_before(commit: str, where: str):
    """Import ``otpr_sb3`` of ``commit`` as ``otpr_sb3_before`` (its own imports renamed)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "otpr_sb3"], check=True, capture_output=True)
    tar_path = os.path.join(where, "before.tar")
    pathlib.Path(tar_path).write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(where, filter="data")
    package = pathlib.Path(where) / "otpr_sb3_before"
    (pathlib.Path(where) / "otpr_sb3").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\botpr_sb3\b", "otpr_sb3_before", path.read_text()))
    sys.path.insert(0, where)
    return importlib.import_module("otpr_sb3_before")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git commit of the earlier version")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600, help="env steps per round")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as where:
        before = import_before(args.before, where)
        demos = expert_demos(10)
        common = dict(batch_size=256, train_freq=1, gradient_steps=1, seed=0, learning_starts=256, dual_start=100)
        models = {}
        for name, cls, data in (("before", before.OTPR, before.Demonstrations(**vars(demos))), ("after", OTPR, demos)):
            model = cls("MultiInputPolicy", gym.make(ENV), **common)
            model.pretrain(data, n_steps=200)
            model.learn(400)
            models[name] = model
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.learn(args.steps, reset_num_timesteps=False)
                rates[name].append(args.steps / (time.perf_counter() - start))
        obs = gym.make(ENV).reset(seed=0)[0]
        latency = {
            name: {"collect_ms": latency_ms(m, obs, False), "deterministic_ms": latency_ms(m, obs, True)}
            for name, m in models.items()
        }
    out = {
        "before": args.before,
        "threads": args.threads,
        "steps_per_round": args.steps,
        "env_steps_per_s": rates,
        "latency": latency,
        "median_ratio_after_over_before": float(np.median(rates["after"]) / np.median(rates["before"])),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
