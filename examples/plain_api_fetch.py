"""Fine-tuning through the plain API with its defaults: ``pretrain(dataset)`` then ``learn``, no harness.

What a new user does on FetchPickAndPlace-v4, with demonstrations recorded by the scripted expert at a seed
and noise level the harness never used (seed 7, noise 0.25, 100 episodes)::

    model = OTPR("MultiInputPolicy", "FetchPickAndPlace-v4", seed=s)
    model.pretrain(dataset)            # every default: 10k BC steps, demonstrations into the replay buffer
    model.learn(5_000)                 # then on to 10k and 30k steps with reset_num_timesteps=False

The deterministic policy is evaluated after BC and after 5k, 10k and 30k online steps, on 50 episodes reset
with seeds 10000..10049 (the harness's evaluation episodes). Each stage appends a row to
``<out>/s<seed>/evaluations.csv`` and checkpoints the model and its replay buffer, so the same command
resumes an interrupted run at its last finished stage::

    python examples/plain_api_fetch.py run --seed 0 --out ../runs/plain_api
    python examples/plain_api_fetch.py report --out ../runs/plain_api   # table: mean +- s.e. over seeds
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import torch as th

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.evaluation import EVAL_SEED, success_rate
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.tasks import get_task

gym.register_envs(gymnasium_robotics)

ENV_ID = "FetchPickAndPlace-v4"
STAGES = (0, 5_000, 10_000, 30_000)  # 0: behaviour cloning only
EVAL_EPISODES = 50
FIELDS = ("timesteps", "success", "wall_time")


def evaluate(model: OTPR, episodes: int = EVAL_EPISODES) -> float:
    """Success rate of the deterministic policy on episodes reset with ``EVAL_SEED + k`` (the harness's episodes)."""
    return success_rate(model, get_task(ENV_ID), episodes, seed=EVAL_SEED)


def dataset(data_path: str) -> str:
    """Record (once) 100 noisy scripted-expert episodes, seed 7, noise 0.25; return the Minari dataset id."""
    from otpr_sb3.benchmark.recording import record

    card = record(ENV_ID, episodes=100, noise=0.25, seed=7, data_path=data_path)
    return card.dataset_id


def _rows(path: str) -> list[dict[str, float]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _append(path: str, row: dict[str, float]) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def run(seed: int, out: str, data_path: str) -> None:
    """Run (or resume) one seed through every stage."""
    th.set_num_threads(1)
    run_dir = os.path.join(out, f"s{seed}")
    os.makedirs(run_dir, exist_ok=True)
    evals, ckpt, buf = (os.path.join(run_dir, n) for n in ("evaluations.csv", "model.zip", "replay_buffer.pkl"))
    done = _rows(evals)
    data_id = dataset(data_path)
    if not os.path.exists(os.path.join(run_dir, "spec.json")):
        with open(os.path.join(run_dir, "spec.json"), "w") as f:
            spec = {"env_id": ENV_ID, "seed": seed, "dataset": data_id, "stages": STAGES, "provenance": provenance()}
            json.dump(spec, f, indent=1)
    spent = done[-1]["wall_time"] if done else 0.0
    start = time.time() - spent
    if done and os.path.exists(ckpt) and os.path.exists(buf):
        model = OTPR.load(ckpt, env=gym.make(ENV_ID))
        model.load_replay_buffer(buf)
    else:  # nothing to resume from: start over
        done = []
        if os.path.exists(evals):
            os.remove(evals)
        model = OTPR("MultiInputPolicy", ENV_ID, seed=seed)
        model.pretrain(data_id, data_path=data_path, progress_bar=True)
    for target in STAGES:
        if any(int(r["timesteps"]) == target for r in done):
            continue
        if target > model.num_timesteps:
            model.learn(target - model.num_timesteps, reset_num_timesteps=False, progress_bar=True)
        row = {"timesteps": target, "success": evaluate(model), "wall_time": time.time() - start}
        model.save(ckpt + ".tmp.zip")
        model.save_replay_buffer(buf + ".tmp.pkl")
        os.replace(ckpt + ".tmp.zip", ckpt)
        os.replace(buf + ".tmp.pkl", buf)
        _append(evals, row)
        print(f"seed {seed}: {target} steps, success {row['success']:.2f}", flush=True)


def _cell(values: list[float], n_seeds: int, missing: str = "not reached") -> str:
    """Mean +- s.e.; the number of seeds too when fewer than the row's have reached this stage."""
    if not values:
        return missing
    v = np.asarray(values)
    text = f"{v.mean():.2f} +- {v.std(ddof=1) / np.sqrt(len(v)):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
    return text if len(v) == n_seeds else f"{text} ({len(v)} of {n_seeds} seeds)"


def report(out: str, harness_runs: str | None = None) -> str:
    """RST table of success (mean +- s.e. over seeds) at each stage, from the rows written so far.

    With ``harness_runs`` (a folder of ``otpr/s<seed>/evaluations.csv`` of the harness), a second row gives the
    harness's OTPR runs on the same task at the same steps where it evaluated (its intermediate evaluations are
    20 episodes; start and end 50).
    """
    curves = {}
    for name in sorted(os.listdir(out)):
        rows = _rows(os.path.join(out, name, "evaluations.csv"))
        if rows:
            curves[name] = {int(r["timesteps"]): r["success"] for r in rows}
    seeds = list(curves)
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - path", "     - seeds"]
    lines += [f"     - {'BC' if t == 0 else f'{t // 1000}k'}" for t in STAGES]
    card_path = os.path.join(out, "card.json")
    demonstrators = ""
    if os.path.exists(card_path):
        with open(card_path) as f:
            demonstrators = f", demonstrators' success {json.load(f)['success_rate']:.2f}"
    lines += [
        f"   * - plain API, defaults (demonstrations: seed 7, noise 0.25{demonstrators}; 10k BC steps)",
        f"     - {len(seeds)} ({', '.join(s[1:] for s in seeds)})",
    ]
    lines += [f"     - {_cell([curves[s][t] for s in seeds if t in curves[s]], len(seeds))}" for t in STAGES]
    if harness_runs:
        runs = {}
        for name in sorted(os.listdir(harness_runs)):
            rows = _rows(os.path.join(harness_runs, name, "evaluations.csv"))
            if rows and int(rows[-1]["timesteps"]) >= STAGES[-1]:
                runs[name] = {int(r["timesteps"]): r["success"] for r in rows}
        cards = set()
        for name in runs:
            with open(os.path.join(harness_runs, name, "spec.json")) as f:
                cards.add(json.load(f)["card"]["success_rate"])
        success = ", ".join(f"{c:.2f}" for c in sorted(cards))
        lines += [
            f"   * - harness ``otpr`` (demonstrations: seed 0, noise 0.3, demonstrators' success {success}; 5k BC steps)",
            f"     - {len(runs)} ({', '.join(s[1:] for s in runs)})",
        ]
        lines += [f"     - {_cell([c[t] for c in runs.values() if t in c], len(runs), 'not evaluated')}" for t in STAGES]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/plain_api")
    parser.add_argument("--data-path", default="outputs/minari")
    parser.add_argument("--write", help="with report: also write the table to this file")
    parser.add_argument("--harness-runs", help="with report: the harness's otpr runs of the task, for a second row")
    args = parser.parse_args()
    if args.command == "run":
        run(args.seed, args.out, os.path.abspath(args.data_path))
    else:
        table = report(args.out, args.harness_runs)
        print(table)
        if args.write:
            with open(args.write, "w") as f:
                f.write(table)


if __name__ == "__main__":
    main()
