"""Copy the light files of finished runs from a runs directory (outside git) into a tracked results folder."""

from __future__ import annotations

import filecmp
import glob
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

from otpr_sb3.benchmark.evaluation import read_evaluations

#: What a finished run keeps in a results folder: its record, not its checkpoints or logs.
LIGHT_FILES = ("spec.json", "evaluations.csv", "summary.json")


def finished_runs(runs_dir: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], list[dict[str, float]]]]:
    """Yield ``(run directory, spec, summary, evaluation rows)`` of every finished run under ``runs_dir``.

    A run is finished when it has ``summary.json``; runs come in the order of their paths
    (``<task>/<method>/s<seed>/``).
    """
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "s*", "summary.json"))):
        run_dir = os.path.dirname(path)
        with open(os.path.join(run_dir, "spec.json")) as f:
            spec = json.load(f)
        with open(path) as f:
            summary = json.load(f)
        yield run_dir, spec, summary, read_evaluations(os.path.join(run_dir, "evaluations.csv"))


def collect(runs_dir: str, dest: str) -> list[str]:
    """Copy :data:`LIGHT_FILES` of every finished run under ``runs_dir`` to the same place under ``dest``.

    A run is finished when it has ``summary.json``. Runs already in ``dest`` with the same files are skipped.

    Parameters
    ----------
    runs_dir : str
        Where the runs were made (``<task>/<method>/s<seed>/``).
    dest : str
        The tracked results folder.

    Returns
    -------
    list of str
        The run directories (relative to ``runs_dir``) copied.

    Raises
    ------
    ValueError
        If ``dest`` already holds one of these runs with other files: a person decides which record to keep.
    FileNotFoundError
        If ``runs_dir`` holds no finished run.
    """
    finished = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(runs_dir, "*", "*", "s*", "summary.json")))
    if not finished:
        raise FileNotFoundError(f"no finished runs (<task>/<method>/s<seed>/summary.json) under `runs_dir` {runs_dir!r}")
    plan: list[tuple[str, str]] = []
    for run_dir in finished:
        rel = os.path.relpath(run_dir, runs_dir)
        target = os.path.join(dest, rel)
        present = [n for n in LIGHT_FILES if os.path.exists(os.path.join(target, n))]
        if present and all(
            os.path.exists(os.path.join(target, n)) and filecmp.cmp(os.path.join(run_dir, n), os.path.join(target, n), False)
            for n in LIGHT_FILES
        ):
            continue
        if present:
            raise ValueError(f"{target} already holds a different record of {rel}; move one of them away first")
        plan.append((run_dir, target))
    for run_dir, target in plan:  # checked first, then copied: a refusal leaves `dest` as it was
        os.makedirs(target, exist_ok=True)
        for name in LIGHT_FILES:
            shutil.copy2(os.path.join(run_dir, name), os.path.join(target, name))
    return [os.path.relpath(r, runs_dir) for r, _ in plan]
