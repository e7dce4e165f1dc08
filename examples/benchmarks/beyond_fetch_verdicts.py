"""Verdicts on the Meta-World and robosuite tasks (issue 28), by the baselines study's rule.

The protocol is on docs/results.rst ("Beyond Fetch: Meta-World and robosuite"): the primary metric is the final
deterministic success; per task, OTPR against BC and against Diffusion-QL (the strongest baseline of the Fetch
table), paired by seed, each decided by :func:`otpr_sb3.benchmark.decision.decide` with the task's seeds in its sweep
file as the minimum (``pending`` until they are all in). A comparison whose runs do not share one code commit, or a
seed whose two runs ran on two CPU kinds, is refused, as in ``baselines_verdicts.py``::

    python examples/benchmarks/beyond_fetch_verdicts.py   # writes docs/beyond_fetch_verdicts.inc

The runs are read from ``results/metaworld/runs`` and ``results/robosuite/runs``; the seeds from
``examples/sweeps/metaworld.toml``, ``robosuite.toml`` and ``robosuite_lift.toml``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from otpr_sb3.benchmark.sweep import SweepConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines_verdicts import comparisons, report_runs, verdicts_table  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
RUNS = tuple(os.path.join(ROOT, "results", family, "runs") for family in ("metaworld", "robosuite"))
SWEEPS = tuple(
    os.path.join(ROOT, "examples", "sweeps", f) for f in ("metaworld.toml", "robosuite.toml", "robosuite_lift.toml")
)
OUT = os.path.join(ROOT, "docs", "beyond_fetch_verdicts.inc")
#: (question, A, B): "A beats B", on the final deterministic success paired by seed.
QUESTIONS = (("OTPR over BC", "otpr", "bc"), ("OTPR over Diffusion-QL", "otpr", "diffusion-ql"))


def study_runs(sweeps: tuple[str, ...] = SWEEPS) -> dict[str, list[tuple[str, int]]]:
    """Task id -> the ``(method, seed)`` runs its sweep files make."""
    runs: dict[str, list[tuple[str, int]]] = {}
    for path in sweeps:
        for spec in SweepConfig.from_toml(path).specs():
            runs.setdefault(spec.env_id, []).append((spec.method, spec.seed))
    return dict(sorted(runs.items()))


def all_runs(runs_dirs: tuple[str, ...] = RUNS) -> list[dict[str, Any]]:
    """Every finished run of the families' collected runs (:func:`baselines_verdicts.report_runs`)."""
    return [run for runs_dir in runs_dirs for run in report_runs(runs_dir)]


def verdicts(runs: list[dict[str, Any]], planned: dict[str, list[tuple[str, int]]]) -> list[dict[str, Any]]:
    """:func:`baselines_verdicts.comparisons` of :data:`QUESTIONS`, each task's planned seeds its minimum."""
    seeds = {task: sorted({seed for _, seed in p}) for task, p in planned.items()}
    return comparisons(runs, seeds, QUESTIONS)


def page_text(runs: list[dict[str, Any]], planned: dict[str, list[tuple[str, int]]]) -> str:
    """The include: how many of each task's planned runs are in (``planned``: :func:`study_runs`), and the verdicts."""
    if not runs:
        return "No run has finished yet.\n"
    counts = ", ".join(f"{task} {sum(r['task'] == task for r in runs)} of {len(p)}" for task, p in planned.items())
    rows = verdicts(runs, planned)
    table = verdicts_table(rows) if rows else "No comparison has runs on both sides yet.\n"
    return f"Runs finished so far, per task: {counts}.\n\n" + table


def main() -> None:
    text = page_text(all_runs(), study_runs())  # before opening the include: a failure leaves it as it was
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
