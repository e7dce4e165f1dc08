"""One setting changed against the results sweep: final success and AUC per seed, paired with the sweep's runs.

Run: ``python examples/benchmarks/study_table.py results/fetch/studies/reg0.1 [more study dirs]
[--sweep results/fetch/runs] [--method otpr]``. Each study directory holds runs of the harness
(``<task>/<method>/s<seed>``) made with one override (``otpr train ... --set reg=0.1``); the table pairs
each finished study run with the sweep's run of the same task, method and seed (same pretrained checkpoint,
same evaluation episodes) and prints an RST list-table.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from otpr_sb3.benchmark.report import load_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--sweep", default="results/fetch/runs")
    parser.add_argument("--method", default="otpr")
    args = parser.parse_args()
    sweep, _ = load_runs(args.sweep)
    sweep = sweep[sweep["done"] & (sweep["method"] == args.method)].set_index(["task", "seed"])
    print(".. list-table::\n   :header-rows: 1\n")
    header = ("study (override)", "task", "seeds", "final", "sweep's final", "paired difference", "AUC difference")
    print("\n".join(f"   {'*' if i == 0 else ' '} - {h}" for i, h in enumerate(header)))
    for study in args.studies:
        runs, _ = load_runs(study)
        runs = runs[runs["done"] & (runs["method"] == args.method)]
        for task, group in runs.groupby("task"):
            spec_path = os.path.join(study, task, args.method, f"s{int(group['seed'].iloc[0])}", "spec.json")
            with open(spec_path) as f:
                spec = json.load(f)
            override = ", ".join(f"{k}={v}" for k, v in {**spec["kwargs"], **spec["policy_kwargs"]}.items())
            ref = sweep.loc[[(task, s) for s in group["seed"]]]
            diff = group["final_success"].to_numpy() - ref["final_success"].to_numpy()
            auc = group["auc"].to_numpy() - ref["auc"].to_numpy()
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
            seeds = ", ".join(str(int(s)) for s in group["seed"])
            cells = (
                f"{os.path.basename(study.rstrip('/'))} ({override})",
                task,
                seeds,
                " / ".join(f"{x:.2f}" for x in group["final_success"]),
                " / ".join(f"{x:.2f}" for x in ref["final_success"]),
                f"{diff.mean():+.2f}" + (f" ± {se:.2f}" if np.isfinite(se) else ""),
                f"{auc.mean():+.2f}",
            )
            print("\n".join(f"   {'*' if i == 0 else ' '} - {c}" for i, c in enumerate(cells)))


if __name__ == "__main__":
    main()
