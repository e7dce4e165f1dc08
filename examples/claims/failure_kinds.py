"""How the claims report's runs fail at the end: each finished run's final model, its failed episodes by kind.

The final model (``model.zip`` of a run directory) acts on the first ``--episodes`` evaluation episodes two ways:

- ``deterministic``: as the harness's final evaluation does (DDIM from the noise mode, EMA actor); the success it
  measures must equal the run's own final evaluation (the record keeps both, and ``tests/test_claims_page.py``
  checks them against the committed run records);
- ``sampled``: the same actor from a fresh Gaussian noise at every step (``examples/plateau/evaluation_variants.py``'s
  variant of that name; generator seeded with 0), which is not one of the protocol's metrics: it tells whether the
  deterministic policy's failures are fixed points of the noise mode.

The behaviour-cloned actor every arm of a seed starts from (the shared pretrained checkpoint in the runs
directory's ``pretrained`` folder) is classified the same two ways, as ``"bc"`` entries: its deterministic success
must equal the start evaluation of that seed's runs.

Every failed episode is classified by :mod:`otpr_sb3.benchmark.failures` (no grasp, and its kinds; dropped; held but
not placed). Runs already in ``--out`` are skipped, so the script resumes::

    python examples/claims/failure_kinds.py --runs-dir outputs/claims_report/runs --out docs/data/claims/failure_kinds.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch as th
from claims_tables import ROOT, run_record
from claims_verdicts import regime_of

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.evaluation import EVAL_SEED, read_evaluations
from otpr_sb3.benchmark.failures import failure_counts
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.run_spec import default_dataset_id
from otpr_sb3.benchmark.tasks import get_task

sys.path.insert(0, os.path.join(ROOT, "examples", "plateau"))
from evaluation_variants import Variant  # noqa: E402

#: The ways of acting evaluated (see the module docstring).
ACTING = ("deterministic", "sampled")


def classify_run(run_dir: str, spec: dict[str, Any], episodes: int) -> dict[str, dict[str, Any]]:
    """Failure counts of the final model in ``run_dir`` per way of acting (:data:`ACTING`), on ``episodes`` episodes."""
    env = get_task(spec["env_id"]).make_env()
    model = OTPR.load(os.path.join(run_dir, "model.zip"), env=env, device="cpu")
    return {how: failure_counts(Variant(model, how), env, episodes, EVAL_SEED) for how in ACTING}


def classify_pretrained(runs_dir: str, dataset: str, seed: int, episodes: int) -> dict[str, Any] | None:
    """Failure counts of the pretrained actor of ``seed`` on ``dataset`` (None if its checkpoint is not there)."""
    name = f"otpr_{dataset.split('/')[-1]}-bc5000-default-s{seed}-fmt2.zip"
    path = os.path.join(runs_dir, "FetchPickAndPlace", "pretrained", name)
    if not os.path.exists(path):
        return None
    env = get_task("FetchPickAndPlace-v4").make_env()
    model = OTPR.load(path, env=env, device="cpu")
    return {"checkpoint": name, **{how: failure_counts(Variant(model, how), env, episodes, EVAL_SEED) for how in ACTING}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="outputs/claims_report/runs")
    parser.add_argument("--out", default="docs/data/claims/failure_kinds.json")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    th.set_num_threads(1)
    record = load_record(args.out, {"episodes": args.episodes, "acting": list(ACTING), "runs": []})
    for run_dir, name in runs_to_classify(args.runs_dir, {r["run"] for r in record["runs"]}):
        with open(os.path.join(run_dir, "spec.json")) as f:
            spec = json.load(f)
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
        rows = read_evaluations(os.path.join(run_dir, "evaluations.csv"))
        run = run_record(spec, summary, rows)
        counts = classify_run(run_dir, spec, args.episodes)
        entry = {
            "run": name,
            "regime": regime_of(spec["env_id"], spec["dataset"]),
            "arm": run["arm"],
            "seed": spec["seed"],
            "final_success_of_run": run["final"],
            **counts,
            "provenance": provenance("cpu"),
        }
        record["runs"].append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "provenance"}), flush=True)
        write_record(record, args.out)
    record.setdefault("bc", [])
    dataset = default_dataset_id("FetchPickAndPlace-v4")  # regime (a)'s demonstrations
    for seed in sorted({r["seed"] for r in record["runs"] if r["regime"] == "a"} - {b["seed"] for b in record["bc"]}):
        counts = classify_pretrained(args.runs_dir, dataset, seed, args.episodes)
        if counts:
            record["bc"].append({"regime": "a", "seed": seed, **counts})
            print(json.dumps({"bc": seed, **{how: counts[how]["success"] for how in ACTING}}), flush=True)
            write_record(record, args.out)


def load_record(path: str, empty: dict[str, Any]) -> dict[str, Any]:
    """The record at ``path`` to resume (``empty`` if there is none); raises if its episode count differs."""
    if not os.path.exists(path):
        return empty
    with open(path) as f:
        record = json.load(f)
    if record["episodes"] != empty["episodes"]:
        raise ValueError(f"{path} holds {record['episodes']}-episode counts; `--episodes` is {empty['episodes']}")
    return record


def runs_to_classify(runs_dir: str, done: set[str]) -> Iterator[tuple[str, str]]:
    """``(run directory, name relative to runs_dir)`` of each finished run with a final model, not in ``done``."""
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "s*", "model.zip"))):
        run_dir = os.path.dirname(path)
        name = os.path.relpath(run_dir, runs_dir)
        if name not in done and os.path.exists(os.path.join(run_dir, "summary.json")):
            yield run_dir, name


def write_record(record: dict[str, Any], path: str) -> None:
    """Write the record atomically (an interrupted run leaves the previous one)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
