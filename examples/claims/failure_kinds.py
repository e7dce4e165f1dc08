"""How the claims report's runs fail at the end: each finished run's final model, its failed episodes by kind.

The final model (``model.zip`` of a run directory) acts as the harness's final evaluation does (deterministic, on
the first ``--episodes`` evaluation episodes), and every failed episode is classified by
:func:`otpr_sb3.benchmark.failures.classify` (no grasp, dropped, held but not placed). The success it measures must
equal the run's own final evaluation: the record keeps both, and ``tests/test_claims_page.py`` checks them against
the committed run records. Runs already in ``--out`` are skipped, so the script resumes::

    python examples/claims/failure_kinds.py --runs-dir outputs/claims_report/runs --out docs/data/claims/failure_kinds.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Any

import torch as th
from claims_tables import run_record
from claims_verdicts import regime_of

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.evaluation import EVAL_SEED, read_evaluations
from otpr_sb3.benchmark.failures import failure_counts
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.tasks import get_task


def classify_run(run_dir: str, spec: dict[str, Any], episodes: int) -> dict[str, Any]:
    """Failure counts of the final model in ``run_dir`` on the first ``episodes`` evaluation episodes."""
    task = get_task(spec["env_id"])
    env = task.make_env()
    model = OTPR.load(os.path.join(run_dir, "model.zip"), env=env, device="cpu")
    return failure_counts(model, env, episodes, EVAL_SEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="outputs/claims_report/runs")
    parser.add_argument("--out", default="docs/data/claims/failure_kinds.json")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    th.set_num_threads(1)
    record: dict[str, Any] = {"episodes": args.episodes, "runs": []}
    if os.path.exists(args.out):
        with open(args.out) as f:
            record = json.load(f)
        if record["episodes"] != args.episodes:
            raise ValueError(f"{args.out} holds {record['episodes']}-episode counts; `--episodes` is {args.episodes}")
    done = {r["run"] for r in record["runs"]}
    for path in sorted(glob.glob(os.path.join(args.runs_dir, "*", "*", "s*", "model.zip"))):
        run_dir = os.path.dirname(path)
        name = os.path.relpath(run_dir, args.runs_dir)
        if name in done or not os.path.exists(os.path.join(run_dir, "summary.json")):
            continue
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
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
