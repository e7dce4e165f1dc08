"""Collect ``outputs/results/*/summary.json`` and ``curve.csv`` into a table and one learning-curve plot.

Run: ``python examples/summarize_results.py [--results outputs/results] [--docs docs]`` after
``examples/train_fetch.py`` runs; writes ``docs/results_table.inc`` and ``docs/_static/results.png``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="outputs/results")
    parser.add_argument("--docs", default="docs")
    args = parser.parse_args()
    runs = []
    for path in sorted(glob.glob(os.path.join(args.results, "*", "summary.json"))):
        with open(path) as f:
            summary = json.load(f)
        curve = np.loadtxt(os.path.join(os.path.dirname(path), "curve.csv"), delimiter=",", skiprows=1, ndmin=2)
        runs.append((summary, curve))
    if not runs:
        raise SystemExit(f"no runs in {args.results}")
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - run",
        "     - demos (expert success)",
        "     - pretraining steps",
        "     - success before",
        "     - success after",
        "     - best during",
        "     - fine-tuning steps",
        "     - env steps/s",
    ]
    for s, curve in runs:
        lines += [
            f"   * - ``{s['algo']}``",
            f"     - {s['demos']} ({s['expert_success']:.2f})",
            f"     - {s['pretrain_steps'] if s['algo'].startswith('otpr') else 0}",
            f"     - {s['before']:.2f}",
            f"     - {s['after']:.2f}",
            f"     - {curve[:, 1].max():.2f}",
            f"     - {s['timesteps']}",
            f"     - {s['env_steps_per_s']:.1f}",
        ]
    os.makedirs(os.path.join(args.docs, "_static"), exist_ok=True)
    with open(os.path.join(args.docs, "results_table.inc"), "w") as f:
        f.write("\n".join(lines) + "\n\n.. image:: _static/results.png\n   :width: 600\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for s, curve in runs:
        ax.plot(curve[:, 0], curve[:, 1], marker="o", label=s["algo"])
    ax.axhline(runs[0][0]["expert_success"], color="0.5", ls="--", label="noisy expert (demos)")
    ax.set_xlabel("environment steps (fine-tuning)")
    ax.set_ylabel("success rate (deterministic, 20 episodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.docs, "_static", "results.png"), dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
