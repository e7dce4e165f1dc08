"""Tables of the Meta-World and robosuite sections of docs/benchmarks_howto.rst, from the committed records::

    python examples/benchmarks/task_tables.py     # rewrites docs/metaworld_*.inc and docs/robosuite_*.inc

For each family, ``docs/data/<family>/experts.json`` (``examples/benchmarks/expert_success.py``) gives the experts'
success by noise; ``results/<family>/calibration/<setting>/`` holds the BC runs (seed 100, a tuning seed) that chose
each task's demonstration setting.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from otpr_sb3.benchmark.report_rst import list_table, write_includes

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
FAMILIES = {"metaworld": "MetaWorld", "robosuite": "Robosuite"}  # family -> prefix of its task ids


def _data(family: str) -> str:
    return os.path.join(ROOT, "docs", "data", family)


def _calibration(family: str, folder: str = "calibration") -> str:
    return os.path.join(ROOT, "results", family, folder)


def experts_table(record: dict[str, Any]) -> str:
    """Success (and median / longest successful episode) of each expert, by action-noise std."""
    rows = [r for r in record["rows"] if r.get("noise_dims", "task") == "task"]  # the task's noise dimensions
    noises = sorted({r["noise"] for r in rows})
    out = []
    for env_id in sorted({r["env_id"] for r in rows}):
        cells = []
        for noise in noises:
            r = next(x for x in rows if (x["env_id"], x["noise"]) == (env_id, noise))
            length = "" if r["length_median"] is None else f" ({r['length_median']:.0f} / {r['length_max']})"
            cells.append(f"{r['success']:.2f}{length}")
        out.append([f"``{env_id}``", *cells])
    return list_table(["task", *(f"noise {n:g}" for n in noises)], out)


def calibration_runs(family: str = "metaworld", folder: str = "calibration") -> list[dict[str, Any]]:
    """The BC calibration runs: task, demonstrations, noise, demonstrators' success and BC's final success.

    ``folder``: ``"calibration"`` (the current runs) or an older set kept beside it (robosuite's
    ``"calibration_previous_expert"``: the Lift runs made before its expert waited for the fingers).
    """
    out = []
    for path in sorted(glob.glob(os.path.join(_calibration(family, folder), "*", "*", "bc", "s*", "summary.json"))):
        with open(os.path.join(os.path.dirname(path), "spec.json")) as f:
            spec = json.load(f)
        with open(path) as f:
            summary = json.load(f)
        card = spec["card"]
        out.append(
            {
                "env_id": spec["env_id"],
                "episodes": card["episodes"],
                "noise": card["noise"],
                "demonstrators": card["success_rate"],
                "bc": summary["final_success"],
                "seed": spec["seed"],
                # None: the task's default then, 5,000 for every task when these runs were made
                "bc_steps": spec["pretrain_steps"] or 5_000,
            }
        )
    return out


def calibration_table(runs: list[dict[str, Any]], chosen: dict[str, tuple[int, float, int]]) -> str:
    """Every calibration run, with the setting each task keeps (its default in ``otpr_sb3.benchmark.tasks``).

    ``chosen``: task id -> its default ``(demonstrations, noise, BC steps)``.
    """
    out = []
    for r in sorted(runs, key=lambda r: (r["env_id"], -r["episodes"], r["noise"], r["bc_steps"])):
        kept = "yes" if chosen.get(r["env_id"]) == (r["episodes"], r["noise"], r["bc_steps"]) else "no"
        out.append(
            [
                f"``{r['env_id']}``",
                str(r["episodes"]),
                f"{r['noise']:g}",
                f"{r['bc_steps']:,}",
                f"{r['demonstrators']:.2f}",
                f"{r['bc']:.2f}",
                kept,
            ]
        )
    header = ["task", "demonstrations", "noise", "BC steps", "demonstrators' success", "BC (50 episodes)", "default"]
    return list_table(header, out)


def tables() -> dict[str, str]:
    """File name -> content of every table the records allow, for every family."""
    from otpr_sb3.benchmark.tasks import TASKS

    out = {}
    for family, prefix in FAMILIES.items():
        if os.path.exists(os.path.join(_data(family), "experts.json")):
            with open(os.path.join(_data(family), "experts.json")) as f:
                out[f"{family}_experts.inc"] = experts_table(json.load(f))
        runs = calibration_runs(family)
        if runs:
            chosen = {
                t: (task.demo_episodes, task.demo_noise, task.pretrain_steps)
                for t, task in TASKS.items()
                if t.startswith(prefix)
            }
            out[f"{family}_calibration.inc"] = calibration_table(runs, chosen)
    return out


if __name__ == "__main__":
    for path in write_includes(tables(), os.path.join(ROOT, "docs")):
        print("wrote", os.path.relpath(path, ROOT))
