"""Time to success: env steps and wall-clock until a method's seed-mean success curve first reaches a threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The success rate that counts as a working policy (issue 29: "time to a working policy").
THRESHOLD = 0.8


def time_to_success(runs: pd.DataFrame, curves: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Per task and method, over finished runs: when the seed-mean curve first reaches ``threshold``.

    Parameters
    ----------
    runs, curves : pandas.DataFrame
        As :func:`otpr_sb3.benchmark.report.load_runs` returns them (``curves`` with ``wall_time``, seconds since
        the run started, evaluations included).
    threshold : float

    Returns
    -------
    pandas.DataFrame
        ``task, method, seeds, steps_to_threshold, wall_time_to_threshold`` (the seed-mean wall-clock at that
        evaluation; NaN where the curve never reaches it), ``cpu_time_to_threshold`` (the same in the runs' CPU time:
        unlike wall-clock, not inflated by other work on the machine; NaN unless every seed recorded it), whether
        every evaluation of the method's runs recorded CPU time (``cpu_recorded``),
        ``run_wall_time`` and its standard error (whole runs),
        ``steps`` (of a whole run) and ``cpus`` (the CPU kinds the runs used).
    """
    keys = ["task", "method", "seed"]
    done = runs.loc[runs["done"].astype(bool)]
    rows = []
    for (task, method), group in done.groupby(["task", "method"], sort=True):
        every = curves.merge(group[keys], on=keys)
        c = every.loc[~every["final"].astype(bool)]  # the curve of periodic evaluations (the final one is longer)
        mean = c.groupby("timesteps", sort=True).agg(
            success=("success", "mean"),
            wall=("wall_time", "mean"),
            cpu=("cpu_time", lambda x: x.mean(skipna=False)),  # NaN unless every seed recorded it
            n=("seed", "nunique"),
        )
        mean = mean.loc[mean["n"] == len(group)]  # evaluations every seed reached
        hit = mean.loc[mean["success"] >= threshold]
        walls = group["wall_time"].to_numpy(dtype=float)
        rows.append(
            {
                "task": task,
                "method": method,
                "seeds": len(group),
                "steps_to_threshold": float(hit.index[0]) if len(hit) else np.nan,
                "wall_time_to_threshold": float(hit["wall"].iloc[0]) if len(hit) else np.nan,
                "cpu_time_to_threshold": float(hit["cpu"].iloc[0]) if len(hit) else np.nan,
                "cpu_recorded": bool(len(every)) and bool(every["cpu_time"].notna().all()),
                "run_wall_time": float(walls.mean()),
                "run_wall_time_se": float(walls.std(ddof=1) / np.sqrt(len(walls))) if len(walls) > 1 else np.nan,
                "steps": int(group["steps"].max()),
                "cpus": ", ".join(sorted(set(group["cpu"].astype(str)))),
            }
        )
    return pd.DataFrame(rows)


def rst_time_to_success(table: pd.DataFrame, threshold: float = THRESHOLD) -> str:
    """Return the table as an RST list-table (minutes; "not reached" where the curve stays below ``threshold``).

    A column of CPU time to ``threshold`` is shown when some method has it (records made before the harness
    recorded CPU time have none: their tables keep their columns).
    """

    def minutes(seconds: float) -> str:
        return "not reached" if np.isnan(seconds) else f"{seconds / 60:.1f} min"

    show_cpu = bool(table["cpu_recorded"].any()) if len(table) else False
    lines = [".. list-table::", "   :header-rows: 1", ""]
    header = ["task", "method", "seeds", f"env steps to {threshold:g}", f"wall-clock to {threshold:g}", "whole run", "CPU"]
    if show_cpu:
        header.insert(5, f"CPU time to {threshold:g}")
    body = []
    for r in table.itertuples():
        steps = "not reached" if np.isnan(r.steps_to_threshold) else f"{int(r.steps_to_threshold):,}"
        se = "" if np.isnan(r.run_wall_time_se) else f" ± {r.run_wall_time_se / 60:.0f}"
        run = f"{r.run_wall_time / 60:.0f}{se} min ({r.steps:,} steps)"
        cells = [r.task, r.method, str(r.seeds), steps, minutes(r.wall_time_to_threshold), run, r.cpus]
        if show_cpu:
            cells.insert(5, minutes(r.cpu_time_to_threshold) if r.cpu_recorded else "not recorded")
        body.append(cells)
    for row in [header, *body]:
        lines.append("   * - " + row[0])
        lines.extend("     - " + cell for cell in row[1:])
    return "\n".join(lines) + "\n"
