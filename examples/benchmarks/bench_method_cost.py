"""What each method of a sweep costs per env step, side by side in one process, and the time to 0.8 that implies.

The report's wall-clock (``time_to_success.rst``) is what each run took on the machine as it was: two runs at a
time, and in some sessions other work beside them (CI, benchmarks, the failure classification). Those loads differ
between runs, so a wall-clock comparison between methods carries them. This script measures each method's own
cost instead. For every method of one task of a sweep (its first seed, the sweep's settings), the model a run starts
from is built as the harness builds it (:func:`otpr_sb3.benchmark.runner.fresh_model`) and warmed up; then each
method fine-tunes for a block of env steps in turn, for several rounds, so that every method sees the same load. One
torch thread, as the sweeps run. The cost of an evaluation episode is measured in the same rounds. ``--table``
joins the record with the report's steps to 0.8 (the seed-mean curve's, as ``otpr report`` finds them)::

    python examples/benchmarks/bench_method_cost.py examples/sweeps/baselines_report.toml --env FetchPickAndPlace-v4 \\
        --runs-dir ../studies/baselines-report/runs --data-path ../studies/minari --out docs/data/method_cost.json
    python examples/benchmarks/bench_method_cost.py --table docs/data/method_cost.json > docs/baselines_method_cost.inc

The shared pretrained checkpoint is read from ``--runs-dir`` (linked into a scratch directory, where the
TensorBoard logs of the measured models go); nothing in the study's runs is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch as th

from otpr_sb3.benchmark.evaluation import success_rate
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.report import load_runs
from otpr_sb3.benchmark.report_rst import list_table
from otpr_sb3.benchmark.run_spec import RunSpec
from otpr_sb3.benchmark.runner import fresh_model
from otpr_sb3.benchmark.sweep import SweepConfig
from otpr_sb3.benchmark.tasks import get_task
from otpr_sb3.benchmark.time_to_success import THRESHOLD, time_to_success

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_cli import printed_table, record_parser  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
REPORT_RUNS = os.path.join(ROOT, "results", "baselines", "report", "runs")


def label(spec: RunSpec) -> str:
    """The method's name as the report's tables give it: its run directory's (method, and a hash of its settings)."""
    return os.path.basename(os.path.dirname(spec.run_dir))


def sweep_specs(path: str, env_id: str, runs_dir: str, data_path: str) -> list[RunSpec]:
    """The first seed's run of every method of ``env_id`` in the sweep, with its directories moved to ``runs_dir``."""
    config = SweepConfig.from_toml(path)
    specs = [s for s in config.specs() if s.env_id == env_id]
    if not specs:
        raise ValueError(f"the sweep {path} has no run of {env_id}")
    first = min(s.seed for s in specs)
    where = {"runs_dir": os.path.abspath(runs_dir), "data_path": os.path.abspath(data_path), "threads": 1}
    return [dataclasses.replace(s, **where) for s in specs if s.seed == first]


def scratch_runs_dir(study_runs: str, env_id: str) -> str:
    """A scratch runs directory whose task folder links the study's pretrained checkpoints (read, never rebuilt)."""
    pretrained = os.path.join(os.path.abspath(study_runs), get_task(env_id).name, "pretrained")
    if not os.path.isdir(pretrained):
        raise FileNotFoundError(f"no pretrained checkpoints in {pretrained}: pass the study's runs directory")
    scratch = tempfile.mkdtemp(prefix="method-cost-")
    task_dir = os.path.join(scratch, get_task(env_id).name)
    os.makedirs(task_dir)
    os.symlink(pretrained, os.path.join(task_dir, "pretrained"))
    return scratch


def measure(specs: list[RunSpec], warmup: int, block: int, rounds: int, eval_episodes: int) -> dict[str, Any]:
    """Per method: seconds (wall and CPU) per env step of each round's block, and per evaluation episode."""
    th.set_num_threads(1)
    task = get_task(specs[0].env_id)
    models = {}
    for spec in specs:
        model, make_env = fresh_model(spec, check_origin=False)  # a study's checkpoints, made by its commit
        if spec.method != "bc":
            model.learn(warmup)
        models[label(spec)] = (spec.method, model, make_env())
    out: dict[str, dict[str, Any]] = {
        name: {k: [] for k in ("train_s_per_step", "train_cpu_s_per_step", "eval_s_per_episode", "eval_cpu_s_per_episode")}
        | {"method": method}
        for name, (method, _, _) in models.items()
    }
    for r in range(rounds):
        for name, (method, model, env) in models.items():
            if method != "bc":
                t0, c0 = time.perf_counter(), time.process_time()
                model.learn(block, reset_num_timesteps=False)
                out[name]["train_s_per_step"].append((time.perf_counter() - t0) / block)
                out[name]["train_cpu_s_per_step"].append((time.process_time() - c0) / block)
            t0, c0 = time.perf_counter(), time.process_time()
            success_rate(model, task, eval_episodes, env=env, seed=1_000 * (r + 1))
            out[name]["eval_s_per_episode"].append((time.perf_counter() - t0) / eval_episodes)
            out[name]["eval_cpu_s_per_episode"].append((time.process_time() - c0) / eval_episodes)
            print(f"round {r + 1}/{rounds} {name}: {out[name]['train_s_per_step'][-1:]} s/step", flush=True)
    return out


def cost_table(record: dict[str, Any], report_runs: str = REPORT_RUNS) -> str:
    """Per method: median CPU time per env step and per evaluation episode, and the time to 0.8 they imply.

    CPU time, not wall-clock: with one torch thread it is what the method costs on a core of its own, whatever else
    the machine ran during the measurement (the record keeps the wall-clock too). The report's own wall-clock to 0.8
    is shown beside it, and so are its runs' wall-clock per env step (``env_steps_per_s`` of their summaries, the last
    stretch of each run, its evaluations and checkpoints included).
    """
    runs, curves = load_runs(report_runs)
    reached = time_to_success(runs, curves)
    args, methods = record["args"], record["methods"]
    task = get_task(args["env"]).name
    reference = float(np.median(methods["otpr"]["train_cpu_s_per_step"]))
    rows, slowdowns = [], []
    for name, m in methods.items():
        evaluation = float(np.median(m["eval_cpu_s_per_episode"]))
        hit = reached.loc[(reached["task"] == task) & (reached["method"] == name)]
        steps = float(hit["steps_to_threshold"].iloc[0]) if len(hit) else float("nan")
        if m["method"] == "bc":
            rows.append([name, "no training", "n/a", "n/a", f"{evaluation:.2f}", "not reached", "n/a", "n/a"])
            continue
        train = float(np.median(m["train_cpu_s_per_step"]))
        when, at_cost, observed = ("no run yet" if hit.empty else "not reached"), "n/a", "n/a"
        if not np.isnan(steps):
            # the start's evaluation, then one every eval_freq steps up to the one that reads 0.8
            episodes = args["final_eval_episodes"] + int(steps // args["eval_freq"]) * args["eval_episodes"]
            when = f"{int(steps):,} ({int(hit['seeds'].iloc[0])} seeds)"
            at_cost = f"{(steps * train + episodes * evaluation) / 60:.1f} min"
            observed = f"{float(hit['wall_time_to_threshold'].iloc[0]) / 60:.1f} min"
        mine = runs.loc[(runs["task"] == task) & (runs["method"] == name) & runs["done"].astype(bool)]
        rate = float(mine["env_steps_per_s"].mean()) if len(mine) else float("nan")
        in_report = "n/a" if np.isnan(rate) or rate <= 0 else f"{1e3 / rate:.0f}"
        if in_report != "n/a":
            slowdowns.append(1.0 / rate / train)
        costs = [f"{1e3 * train:.0f}", f"{train / reference:.2f}x", in_report, f"{evaluation:.2f}"]
        rows.append([name, *costs, when, at_cost, observed])
    headers = [
        "method",
        "CPU ms per env step",
        "vs otpr",
        "report's wall ms per env step",
        "CPU s per evaluation episode",
        f"env steps to {THRESHOLD:g} (report)",
        f"CPU time to {THRESHOLD:g}",
        "report's wall-clock to 0.8",
    ]
    text = list_table(headers, rows)
    if slowdowns:
        text += (
            f"\nIn the report's runs, an env step took {min(slowdowns):.1f}-{max(slowdowns):.1f} times "
            "its method's CPU cost in wall-clock.\n"
        )
    return text


def main() -> None:
    parser = record_parser(__doc__)
    parser.add_argument("sweep", nargs="?", help="the sweep file whose methods to measure")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--runs-dir", default=os.path.join(ROOT, os.pardir, "studies", "baselines-report", "runs"))
    parser.add_argument("--data-path", default=os.path.join(ROOT, os.pardir, "studies", "minari"))
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--episodes-per-round", type=int, default=2, help="evaluation episodes timed per round")
    parser.add_argument("--report-runs", default=REPORT_RUNS, help="with --table: the report runs to join")
    args = parser.parse_args()
    if printed_table(args, cost_table, args.report_runs):
        return
    if not args.sweep or not args.out:
        parser.error("give the sweep file and --out (or --table RECORD)")
    scratch = scratch_runs_dir(args.runs_dir, args.env)
    try:
        specs = sweep_specs(args.sweep, args.env, scratch, args.data_path)
        methods = measure(specs, args.warmup, args.block, args.rounds, args.episodes_per_round)
    finally:
        shutil.rmtree(scratch)  # the link to the study's checkpoints, and the measured models' logs
    # The report's evaluations (every eval_freq steps, eval_episodes each) are part of its time to 0.8.
    entry = {
        "args": {
            **vars(args),
            **{k: getattr(specs[0], k) for k in ("eval_freq", "eval_episodes", "final_eval_episodes")},
        },
        "provenance": provenance("cpu"),
        "methods": methods,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(entry, f, indent=1)


if __name__ == "__main__":
    main()
