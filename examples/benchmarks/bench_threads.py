"""OTPR's behaviour cloning steps per second on 1 or 2 torch threads, with OpenMP's default or passive waiting.

On a machine whose cores are busy with other processes, a torch thread that waits for another at the end of each
parallel operation spins (OpenMP's default, "active" waiting) while the other is descheduled; thousands of small
parallel operations per training step then each wait a scheduler slice. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting
threads sleep. The policy is read when the OpenMP runtime starts, so each setting runs in its own process::

    python examples/benchmarks/bench_threads.py --label loaded --out docs/data/bench_threads.json
    python examples/benchmarks/bench_threads.py --table docs/data/bench_threads.json > docs/bench_threads.inc

Label the record by the machine's state (``loaded``: two single-threaded training runs on the two cores; ``idle``).
The work: ``OTPR.pretrain`` (actor and IQL critic steps, batch 256) on 500 random transitions of
``FetchPickAndPlace-v4``'s spaces, timed after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_cli import checkout, printed_table, record_parser, save_label  # noqa: E402

#: (torch threads, OMP_WAIT_POLICY or None for OpenMP's default)
SETTINGS = ((1, None), (2, None), (2, "PASSIVE"))


def child(threads: int, steps: int) -> None:
    """Time ``steps`` behaviour-cloning steps in this process and print the steps per second as JSON."""
    import gymnasium as gym
    import gymnasium_robotics
    import numpy as np
    import torch as th

    from otpr_sb3 import OTPR
    from otpr_sb3.demonstrations import Demonstrations

    th.set_num_threads(threads)
    gym.register_envs(gymnasium_robotics)
    env = gym.make("FetchPickAndPlace-v4")
    env.observation_space.seed(0)
    env.action_space.seed(0)
    obs = [env.observation_space.sample() for _ in range(501)]
    stacked = {k: np.stack([o[k] for o in obs]).astype(np.float32) for k in obs[0]}
    demos = Demonstrations.from_arrays(
        observations={k: v[:-1] for k, v in stacked.items()},
        next_observations={k: v[1:] for k, v in stacked.items()},
        actions=np.stack([env.action_space.sample() for _ in range(500)]),
    )
    model = OTPR("MultiInputPolicy", env, seed=0, verbose=0)
    model.pretrain(demos, n_steps=10, critic_steps=10, add_to_replay_buffer=False)  # warm-up
    t0 = time.perf_counter()
    model.pretrain(demos, n_steps=steps, critic_steps=steps, add_to_replay_buffer=False)
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - t0)}))


def measure(steps: int) -> list[dict[str, object]]:
    """Each setting of :data:`SETTINGS` in a fresh process."""
    rows = []
    for threads, policy in SETTINGS:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        cmd = [sys.executable, __file__, "--child", str(threads), str(steps)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rate = json.loads(out.strip().splitlines()[-1])["steps_per_s"]
        rows.append({"threads": threads, "omp_wait_policy": policy or "default", "steps_per_s": rate})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(record: dict) -> str:
    """One row per setting, one column per label: steps per second and the ratio to one thread."""
    from otpr_sb3.benchmark.report_rst import list_table

    labels = list(record)
    body = []
    for i, (threads, policy) in enumerate(SETTINGS):
        row = [str(threads), policy or "default"]
        for label in labels:
            rates = [r["steps_per_s"] for r in record[label]["rows"]]
            row.append(f"{rates[i]:.1f} ({rates[i] / rates[0]:.2f}x)")
        body.append(row)
    headers = ["torch threads", "OMP_WAIT_POLICY", *(f"{label}: steps/s (vs 1 thread)" for label in labels)]
    return list_table(headers, body)


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("--label", choices=["loaded", "idle"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if printed_table(args, table):
        return
    rows = measure(args.steps)
    if args.out:
        import otpr_sb3

        save_label(args.out, args.label, {"rows": rows, "steps": args.steps, "git": checkout(otpr_sb3.__file__)})


if __name__ == "__main__":
    main()
