"""Two sweep trials at a time (one torch thread each) vs one at a time (two threads), through Ray Tune.

Runs the same two short OTPR trials on FetchPickAndPlace-v4 (two seeds: pretraining, fine-tuning and
evaluations) both ways, each in a fresh runs directory, and prints the wall-clock of each sweep and the ratio.
The answer sets ``max_concurrent`` and ``threads_per_trial`` in ``examples/sweeps/*.toml``::

    python examples/benchmarks/bench_sweep_concurrency.py --steps 1500
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from otpr_sb3.benchmark.sweep import SweepConfig, run_sweep


def _sweep(root: str, concurrent: int, threads: int, args: argparse.Namespace) -> tuple[float, float]:
    config = SweepConfig.from_dict(
        {
            "name": f"c{concurrent}t{threads}",
            "runs_dir": os.path.join(root, f"c{concurrent}t{threads}", "runs"),
            "data_path": args.data_path,
            "storage": os.path.join(root, f"c{concurrent}t{threads}", "ray"),
            "max_concurrent": concurrent,
            "cpus_per_trial": 2 // concurrent,
            "threads_per_trial": threads,
            "defaults": {
                "steps": args.steps,
                "eval_freq": args.steps,
                "eval_episodes": 5,
                "final_eval_episodes": 5,
                "pretrain_steps": args.pretrain_steps,
                "kwargs": {"dual_start": 0},  # the full loop (dual and H guidance) from the first step
            },
            "runs": [{"env": args.env, "methods": ["otpr"], "seeds": [0, 1]}],
        }
    )
    start = time.perf_counter()
    run_sweep(config, restart=True)
    wall = time.perf_counter() - start
    rates = []
    for spec in config.specs():
        with open(os.path.join(spec.run_dir, "summary.json")) as f:
            rates.append(json.load(f)["env_steps_per_s"])
    return wall, sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--steps", type=int, default=1500, help="online steps of each trial")
    parser.add_argument("--pretrain-steps", type=int, default=500)
    parser.add_argument("--data-path", default="outputs/minari")
    args = parser.parse_args()
    import ray

    rows = []
    with tempfile.TemporaryDirectory() as root:
        for concurrent, threads in ((2, 1), (1, 2)):
            wall, rate = _sweep(root, concurrent, threads, args)
            rows.append((concurrent, threads, wall, rate))
            ray.shutdown()
    base = rows[1][2]
    print(f"\n2 trials of {args.steps} OTPR steps on {args.env} (pretrain {args.pretrain_steps} steps each)\n")
    print("| trials at a time | threads each | sweep wall-clock (s) | env steps/s per trial | speed-up |")
    print("|---|---|---|---|---|")
    for concurrent, threads, wall, rate in rows:
        print(f"| {concurrent} | {threads} | {wall:.0f} | {rate:.1f} | {base / wall:.2f}x |")


if __name__ == "__main__":
    main()
