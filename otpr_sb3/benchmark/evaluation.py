"""Deterministic evaluation on fixed seeds shared by every method, and the per-run evaluation log."""

from __future__ import annotations

import csv
import os
from typing import Any

import gymnasium as gym

from otpr_sb3.benchmark.tasks import Task

#: Episode ``k`` of every evaluation is reset with ``EVAL_SEED + k``: all methods see the same episodes, and a
#: 20-episode evaluation uses the first 20 of the final evaluation's 50.
EVAL_SEED = 10_000

#: ``wall_time`` and ``cpu_time``: seconds of wall-clock and of this process's CPU since the run started, across
#: resumes. With one torch thread, CPU time is what the run cost whatever else ran on the machine; records made
#: before it was recorded have no ``cpu_time`` (read as NaN where a file mixes both).
EVAL_FIELDS = ("timesteps", "success", "episodes", "final", "wall_time", "cpu_time")
_INT_FIELDS = ("timesteps", "episodes", "final")


def success_rate(
    model: Any, task: Task, episodes: int, env: gym.Env | None = None, seed: int = EVAL_SEED, deterministic: bool = True
) -> float:
    """Fraction of ``episodes`` episodes that end in success, as the task defines it.

    Parameters
    ----------
    model : SB3 model
        Anything with ``predict(obs, deterministic=True)``.
    task : Task
    episodes : int
    env : gymnasium.Env, optional
        Reused if given (a new one otherwise).
    seed : int
        Episode ``k`` is reset with ``seed + k``.
    deterministic : bool
        Passed to ``predict``. ``False`` acts as the method collects (for OTPR, L candidates drawn by the guidance's
        weights), from the global torch and numpy generators: seed them to repeat it.
    """
    if episodes < 1:
        raise ValueError(f"`episodes` must be >= 1, got {episodes}")
    env = env if env is not None else task.make_env()
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, info = False, dict[str, Any]()
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += int(task.succeeded(info))
    return wins / episodes


def read_evaluations(path: str) -> list[dict[str, float]]:
    """Read the rows of an ``evaluations.csv`` (empty if it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v != "" else float("nan") for k, v in row.items()} for row in csv.DictReader(f)]


def _formatted(row: dict[str, float], fields: tuple[str, ...] = EVAL_FIELDS) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    for k in fields:
        value = row.get(k, float("nan"))
        out[k] = "" if value != value else int(value) if k in _INT_FIELDS else value  # NaN: an empty cell
    return out


def write_evaluations(path: str, rows: list[dict[str, float]]) -> None:
    """Write ``rows`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, EVAL_FIELDS)
        writer.writeheader()
        writer.writerows(_formatted(r) for r in rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_evaluation(path: str, row: dict[str, float]) -> None:
    """Append one row to ``path`` (written with a header if new), flushed to disk.

    An existing file keeps its header: a row is written with that file's fields (an older record without
    ``cpu_time`` stays one).
    """
    new = not os.path.exists(path) or os.path.getsize(path) == 0  # an empty file (a crash at its creation) gets one
    fields: tuple[str, ...] = EVAL_FIELDS
    if not new:
        with open(path, newline="") as f:
            fields = tuple(next(csv.reader(f), EVAL_FIELDS))
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new:
            writer.writeheader()
        writer.writerow(_formatted(row, fields))
        f.flush()
        os.fsync(f.fileno())
