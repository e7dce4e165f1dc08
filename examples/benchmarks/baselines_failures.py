"""How the baselines study's report runs fail at the end: each final model's failed episodes by kind, per task.

The final model (``model.zip`` of a run directory) of every finished report run of ``--task`` by a method built on
OTPR's class (:data:`METHODS`) acts as the harness's final evaluation does (``predict(deterministic=True)``) on the
first ``--episodes`` evaluation episodes; its success must equal the run's own final evaluation (the record keeps
both; ``tests/test_results_page.py`` checks them). Each failed episode is classified by
:mod:`otpr_sb3.benchmark.failures` (PickAndPlace: no grasp, and its kinds; dropped; held but not placed. Push: never
moved, passed the goal, pushed away, stalled, left the object, short of the goal). Runs already in the task's record
are skipped, so the script resumes; the models are in the study's runs directory (outside git)::

    python examples/benchmarks/baselines_failures.py --runs-dir ../studies/baselines-report/runs [--task FetchPush-v4]
    python examples/benchmarks/baselines_failures.py --table [--task FetchPush-v4]   # the task's include, from its record
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
import torch as th

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.evaluation import EVAL_SEED
from otpr_sb3.benchmark.failures import CATEGORIES, NO_GRASP_KINDS, PUSH_CATEGORIES, failure_counts
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.report_rst import list_table
from otpr_sb3.benchmark.tasks import get_task

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
sys.path.insert(0, os.path.join(ROOT, "examples", "claims"))
from failure_kinds import load_record, runs_to_classify, write_record  # noqa: E402

#: Task -> its record, its table, and the name of its kinds for :func:`otpr_sb3.benchmark.failures.failure_counts`.
TASKS = {
    "FetchPickAndPlace-v4": ("failure_kinds.json", "baselines_failures.inc", "pick_and_place"),
    "FetchPush-v4": ("failure_kinds_push.json", "baselines_failures_push.inc", "push"),
}
#: The methods whose final models load as :class:`~otpr_sb3.OTPR` (their deterministic action is the harness's).
METHODS = ("otpr", "otpr-her", "idql-n", "dql", "diffusion-ql")


def paths(task: str) -> tuple[str, str]:
    """The record and the table (an include of docs/) of ``task``."""
    record, table, _ = TASKS[task]
    return os.path.join(ROOT, "docs", "data", "baselines", record), os.path.join(ROOT, "docs", table)


def classify(run_dir: str, episodes: int, task: str = "FetchPickAndPlace-v4") -> dict[str, Any] | None:
    """The failure counts of the final model in ``run_dir`` (None if it is not a ``task`` run of :data:`METHODS`)."""
    with open(os.path.join(run_dir, "spec.json")) as f:
        spec = json.load(f)
    if spec["env_id"] != task or spec["method"] not in METHODS:
        return None
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    env = get_task(task).make_env()
    model = OTPR.load(os.path.join(run_dir, "model.zip"), env=env, device="cpu")
    counts = failure_counts(model, env, episodes, EVAL_SEED, TASKS[task][2])
    return {"method": spec["method"], "seed": spec["seed"], "final_success_of_run": summary["final_success"], **counts}


def failures_table(record: dict[str, Any], task: str = "FetchPickAndPlace-v4") -> str:
    """Per method: runs, mean success, and the mean number of failed episodes of each kind per run."""
    if not record["runs"]:
        return "No final model has been classified yet.\n"
    if TASKS[task][2] == "push":
        kinds, header = PUSH_CATEGORIES, list(PUSH_CATEGORIES)
    else:
        kinds = (*NO_GRASP_KINDS, *CATEGORIES[1:])
        header = [*(f"no grasp: {k}" for k in NO_GRASP_KINDS), *CATEGORIES[1:]]
    body = []
    for method in METHODS:
        mine = [r for r in record["runs"] if r["method"] == method]
        if mine:
            means = [float(np.mean([r[k] for r in mine])) for k in ("success", *kinds)]
            body.append([method, str(len(mine)), f"{means[0]:.2f}", *(f"{m:.1f}" for m in means[1:])])
    return list_table(["method", "runs", "success", *header], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="outputs/baselines_report/runs")
    parser.add_argument("--task", choices=sorted(TASKS), default="FetchPickAndPlace-v4")
    parser.add_argument("--out", help="the record (default: the task's, under docs/data/baselines)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--table", action="store_true", help="write the task's include of docs/ from its record")
    args = parser.parse_args()
    out, table = paths(args.task)
    args.out = args.out or out
    record = load_record(args.out, {"episodes": args.episodes, "runs": []})
    if args.table:
        with open(table, "w") as f:
            f.write(failures_table(record, args.task))
        return
    th.set_num_threads(1)
    skipped = {r["run"] for r in record["runs"]} | set(record.setdefault("other_runs", []))
    for run_dir, name in runs_to_classify(args.runs_dir, skipped):
        counts = classify(run_dir, args.episodes, args.task)
        if counts is None:
            record["other_runs"].append(name)
            continue
        record["runs"].append({"run": name, **counts, "provenance": provenance("cpu")})
        print(json.dumps({"run": name, **counts}), flush=True)
        write_record(record, args.out)
    write_record(record, args.out)


if __name__ == "__main__":
    main()
