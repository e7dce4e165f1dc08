"""Tables and plots from run directories: a Table-1-style summary, learning curves, ablation panels, rliable aggregates.

Everything is read from ``<runs_dir>/<task>/<method>/s<seed>/evaluations.csv`` (and ``summary.json`` when the
run has finished), so a report can be made while a sweep is still running; unfinished runs are counted as such
and left out of the final-success statistics.

Statistics: with 5 or more finished seeds, the interquartile mean (IQM) of final success with a 95%
stratified-bootstrap confidence interval, and the probability of improvement of OTPR over each method, from
``rliable``; with fewer, mean and standard error only.
"""

from __future__ import annotations

import glob
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from otpr_sb3.benchmark.evaluation import EVAL_FIELDS, read_evaluations
from otpr_sb3.benchmark.methods import METHODS
from otpr_sb3.benchmark.report_rst import DIAGNOSTICS, rst_diagnostics, rst_differences, rst_improvement, rst_table
from otpr_sb3.benchmark.time_to_success import rst_time_to_success, time_to_success

#: Per-run dual diagnostics carried into runs.csv and the summary (medians over the run, see diagnostics.py).

#: rliable aggregates need at least this many seeds.
MIN_SEEDS_RLIABLE = 5

#: Ablation panels (the paper's Fig. 3): guidance, and mask.
ABLATIONS = {
    "guidance": ("otpr", "otpr-q", "otpr-adv", "idql", "idql-n", "dql"),
    "mask": ("otpr", "otpr-u"),
}


def load_runs(runs_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every run under ``runs_dir``.

    Returns
    -------
    runs : pandas.DataFrame
        One row per run: task, method, seed, done, start_success, final_success, final_stochastic (the final
        model acting as it collects; NaN for runs that did not record it), auc, steps, wall_time,
        env_steps_per_s, and the run's dual diagnostics (:mod:`otpr_sb3.benchmark.diagnostics`; NaN where
        the summary has none).
    curves : pandas.DataFrame
        One row per evaluation: task, method, seed, timesteps, success, episodes, final, wall_time and cpu_time
        (NaN in records made before it was recorded).
    """
    runs: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "s*", "evaluations.csv"))):
        run_dir = os.path.dirname(path)
        rest, seed_dir = os.path.split(run_dir)
        rest, method = os.path.split(rest)
        task = os.path.basename(rest)
        rows = read_evaluations(path)
        if not rows:
            continue
        seed = int(seed_dir[1:])
        summary_path = os.path.join(run_dir, "summary.json")
        summary: dict[str, Any] = {}
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        finals = [r for r in rows if r["final"]]
        done = bool(summary.get("done")) and bool(finals)
        commit, cpu = _provenance(run_dir, summary)
        runs.append(
            {
                "task": task,
                "method": method,
                "seed": seed,
                "done": done,
                "start_success": rows[0]["success"],
                "final_success": finals[-1]["success"] if done else np.nan,
                "final_stochastic": summary.get("final_success_stochastic") if done else np.nan,  # None: NaN
                "auc": area_under_curve(rows),
                "steps": int(rows[-1]["timesteps"]),
                "wall_time": rows[-1]["wall_time"],
                "env_steps_per_s": summary.get("env_steps_per_s", np.nan),
                "commit": commit,
                "cpu": cpu,
                **{name: summary.get("diagnostics", {}).get(name, np.nan) for name in DIAGNOSTICS},
            }
        )
        curves.extend({"task": task, "method": method, "seed": seed, "cpu_time": np.nan, **r} for r in rows)
    columns = ["task", "method", "seed", "done", "start_success", "final_success", "final_stochastic", "auc", "steps"]
    runs_table = pd.DataFrame(runs, columns=[*columns, "wall_time", "env_steps_per_s", "commit", "cpu", *DIAGNOSTICS])
    return runs_table, pd.DataFrame(curves, columns=["task", "method", "seed", *EVAL_FIELDS])


def _provenance(run_dir: str, summary: dict[str, Any]) -> tuple[str, str]:
    """Short commit and CPU of a run: of the process that finished it, else of the one that started it.

    A record made before provenance was recorded may carry a reconstructed one (``"reconstructed": true``): its
    commit is then the one that committed the record, shown as ``<=abc1234`` (the code was that commit or older).
    """
    origin = summary.get("provenance")
    spec_path = os.path.join(run_dir, "spec.json")
    if not origin and os.path.exists(spec_path):
        with open(spec_path) as f:
            origin = json.load(f).get("provenance")
    if not origin:
        return "unknown", "unknown"
    if origin.get("commit"):
        commit = origin["commit"][:7] + ("+dirty" if origin.get("dirty") else "")
    elif origin.get("recorded_in_commit"):
        commit = "<=" + origin["recorded_in_commit"][:7]
    else:
        commit = "unknown"
    return commit, origin.get("cpu") or "unknown"


def area_under_curve(rows: list[dict[str, float]]) -> float:
    """Normalised area under success vs env steps (trapezoids): the mean success over the run, in [0, 1].

    A run with one evaluation (behaviour cloning) has its success as its area.
    """
    t = np.array([r["timesteps"] for r in rows], dtype=float)
    s = np.array([r["success"] for r in rows], dtype=float)
    if len(t) == 1 or t[-1] <= t[0]:
        return float(s[-1])
    return float(np.sum(0.5 * (s[1:] + s[:-1]) * np.diff(t)) / (t[-1] - t[0]))


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else np.nan
    return float(values.mean()), se


def summary_table(runs: pd.DataFrame, reps: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Table-1-style summary: per task and method, start -> final success and area under the curve.

    Mean and standard error over finished seeds; with ``MIN_SEEDS_RLIABLE`` or more, also the IQM of final
    success and its 95% stratified-bootstrap interval (``rliable``, ``reps`` samples). ``wall_time_min`` is the
    mean wall-clock of a finished run (evaluations included, and the shared pretraining for a run that built or
    waited for it: the ``bc`` runs of the results sweep did), ``env_steps_per_s`` its
    mean training throughput.
    """
    out = []
    for (task, method), group in runs.groupby(["task", "method"], sort=True):
        finished = group[group["done"]]
        row: dict[str, Any] = {
            "task": task,
            "method": method,
            "seeds": len(finished),
            "unfinished": len(group) - len(finished),
        }
        for column in ("start_success", "final_success", "final_stochastic", "auc"):
            values = finished[column].to_numpy(float) if column in finished else np.array([])  # older tables lack one
            row[column], row[column + "_se"] = _mean_se(values)
        for column, name in (("commit", "commits"), ("cpu", "cpus")):
            row[name] = ", ".join(sorted(set(group[column]))) if column in group else "unknown"
        row["wall_time_min"] = float(finished["wall_time"].mean() / 60.0) if len(finished) else np.nan
        row["env_steps_per_s"] = float(finished["env_steps_per_s"].mean()) if len(finished) else np.nan
        for name in DIAGNOSTICS:  # median over seeds of the per-run medians
            values = finished[name].to_numpy(float)
            row[name] = float(np.median(values[np.isfinite(values)])) if np.isfinite(values).any() else np.nan
        row["iqm_final"] = row["iqm_low"] = row["iqm_high"] = np.nan
        if len(finished) >= MIN_SEEDS_RLIABLE:
            point, (low, high) = _iqm(finished["final_success"].to_numpy(float), reps, seed)
            row["iqm_final"], row["iqm_low"], row["iqm_high"] = point, low, high
        out.append(row)
    return pd.DataFrame(out)


@contextmanager
def _bootstrap_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for one rliable call, then restore it.

    rliable 1.2's stratified bootstraps draw their indices with ``np.random.choice`` and ignore the
    ``random_state`` they are given, so without this the intervals change from one report to the next.
    """
    state = np.random.get_state()  # noqa: NPY002 (rliable draws from the legacy global RNG)
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _iqm(values: np.ndarray, reps: int, seed: int) -> tuple[float, tuple[float, float]]:
    from rliable import library as rly
    from rliable import metrics

    with warnings.catch_warnings(), _bootstrap_rng(seed):  # rliable passes arch a RandomState, which arch deprecates
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(
            {"m": values[:, None]},
            lambda x: np.array([metrics.aggregate_iqm(x)]),
            reps=reps,
            random_state=np.random.RandomState(seed),
        )
    return float(point["m"][0]), (float(interval["m"][0, 0]), float(interval["m"][1, 0]))


def probability_of_improvement(runs: pd.DataFrame, reference: str = "otpr", reps: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """``P(reference > method)`` on final success, with 95% bootstrap intervals (rliable), per task.

    Only pairs where both methods have ``MIN_SEEDS_RLIABLE`` or more finished seeds are compared.
    """
    from rliable import library as rly
    from rliable import metrics

    out = []
    finished = runs[runs["done"]]
    for task, group in finished.groupby("task", sort=True):
        ref = group.loc[group["method"] == reference, "final_success"].to_numpy(float)
        if len(ref) < MIN_SEEDS_RLIABLE:
            continue
        for method, other in group.groupby("method", sort=True):
            values = other["final_success"].to_numpy(float)
            if method == reference or len(values) < MIN_SEEDS_RLIABLE:
                continue
            with warnings.catch_warnings(), _bootstrap_rng(seed):  # arch deprecates the RandomState rliable passes
                warnings.simplefilter("ignore", FutureWarning)
                point, interval = rly.get_interval_estimates(
                    {"pair": (ref[:, None], values[:, None])},
                    metrics.probability_of_improvement,
                    reps=reps,
                    random_state=np.random.RandomState(seed),
                )
            out.append(
                {
                    "task": task,
                    "reference": reference,
                    "method": method,
                    "probability_of_improvement": float(point["pair"]),
                    "low": float(np.ravel(interval["pair"])[0]),
                    "high": float(np.ravel(interval["pair"])[1]),
                }
            )
    return pd.DataFrame(out, columns=["task", "reference", "method", "probability_of_improvement", "low", "high"])


def paired_differences(runs: pd.DataFrame, reference: str = "otpr") -> pd.DataFrame:
    """Compute ``reference - method`` in final success and area under the curve, paired by seed, per task.

    Runs of one seed share the pretrained checkpoint and the training env's seed (and, for the OTPR variants,
    everything before ``dual_start``), so the per-seed difference removes the spread between pretrained
    checkpoints that the separate means carry. Only seeds where both runs have finished are paired; the
    standard error is over those seeds (NaN with one), ``wins`` counts seeds where ``reference`` is ahead
    in final success.
    """
    out = []
    finished = runs[runs["done"]]
    for task, group in finished.groupby("task", sort=True):
        ref = group[group["method"] == reference].set_index("seed")
        if ref.empty:
            continue
        for method, other in group.groupby("method", sort=True):
            if method == reference:
                continue
            other = other.set_index("seed")
            seeds = sorted(set(ref.index) & set(other.index))
            if not seeds:
                continue
            row: dict[str, Any] = {"task": task, "reference": reference, "method": method, "seeds": len(seeds)}
            for column in ("final_success", "auc"):
                diff = ref.loc[seeds, column].to_numpy(float) - other.loc[seeds, column].to_numpy(float)
                row[column + "_diff"], row[column + "_diff_se"] = _mean_se(diff)
            row["wins"] = int(
                (ref.loc[seeds, "final_success"].to_numpy() > other.loc[seeds, "final_success"].to_numpy()).sum()
            )
            out.append(row)
    columns = ["task", "reference", "method", "seeds", "final_success_diff", "final_success_diff_se", "auc_diff"]
    return pd.DataFrame(out, columns=[*columns, "auc_diff_se", "wins"])


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per task, method and evaluation step: mean success, standard error and number of seeds."""
    grouped = curves.groupby(["task", "method", "timesteps"], sort=True)["success"]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["se"] = out["std"] / np.sqrt(out["count"])
    return out.drop(columns="std").rename(columns={"count": "seeds"})


def _color(method: str) -> Any:
    """One colour per method in every figure: ``tab10`` then ``Dark2`` in the order of METHODS (18 distinct)."""
    import matplotlib

    palette = [*matplotlib.colormaps["tab10"].colors, *matplotlib.colormaps["Dark2"].colors]  # type: ignore[attr-defined]
    names = list(METHODS)
    return palette[names.index(method) % len(palette)] if method in names else "k"


def panel_curves(curves: pd.DataFrame, task: str, methods: Sequence[str] | None) -> tuple[pd.DataFrame, list[int]]:
    """Return the evaluations of one figure panel, on the seeds every one of its methods has, and those seeds.

    No curve of a panel then averages more seeds than another (a 5-seed mean beside a 3-seed one would compare
    different checkpoints).
    """
    panel = curves[curves["task"] == task]
    if methods:
        panel = panel[panel["method"].isin(methods)]
    seed_sets = [set(g["seed"]) for _, g in panel.groupby("method")]
    shared = sorted(set.intersection(*seed_sets)) if seed_sets else []
    return panel[panel["seed"].isin(shared)], shared


def _seed_range(seeds: Sequence[int]) -> str:
    """``0-2`` for consecutive seeds, ``0, 2, 5`` otherwise."""
    seeds = sorted(seeds)
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def plot_panels(
    curves: pd.DataFrame,
    panels: Sequence[tuple[str, str, tuple[str, ...] | None]],
    path: str,
    color: Callable[[str], Any] = _color,
) -> None:
    """Draw learning curves, one panel per ``(task, title, methods)``, each on the seeds all its methods share.

    Parameters
    ----------
    curves : pandas.DataFrame
        One row per evaluation: ``task``, ``method``, ``seed``, ``timesteps``, ``success``.
    panels : sequence of (str, str, tuple of str or None)
        The task of a panel, its title and its methods in legend order (``None``: every method of the task).
    path : str
        Where the PNG goes.
    color : callable
        Method name -> matplotlib colour (default: one fixed colour per harness method).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.6), squeeze=False)
    for ax, (task, title, methods) in zip(axes[0], panels):
        panel, shared = panel_curves(curves, task, methods)
        sub = mean_curves(panel)
        if shared:
            title = f"{title}\nseeds {_seed_range(shared)} (shared by every curve)"
        # BC is one evaluation: drawn across the task's runs, or every task's when it has no other run yet.
        span = sub["timesteps"].max() if len(sub) else 0
        span = span if span > 0 else max(float(curves["timesteps"].max()), 1.0)
        for method in methods or sorted(sub["method"].unique()):
            m = sub[sub["method"] == method]
            if m.empty:
                continue
            x, y, se = m["timesteps"].to_numpy(), m["mean"].to_numpy(), np.nan_to_num(m["se"].to_numpy())
            shade = color(method)
            if len(x) == 1:  # behaviour cloning: one evaluation, drawn across the panel
                x, y, se = np.array([0, span]), np.repeat(y, 2), np.repeat(se, 2)
                ax.plot(x, y, ls="--", color=shade, label=f"{method} (n={int(m['seeds'].max())})")
            else:
                ax.plot(x, y, marker=".", color=shade, label=f"{method} (n={int(m['seeds'].max())})")
            ax.fill_between(x, y - se, y + se, color=shade, alpha=0.2)
        ax.set_title(title, fontsize=10)
        # The band is the spread over seeds; one evaluation of n episodes has its own binomial noise on top.
        ax.set_xlabel("online env steps (one 20-episode evaluation: s.e. up to 0.11)", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    axes[0][0].set_ylabel("success rate (mean ± s.e. over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_report(runs_dir: str, out_dir: str, reps: int = 2_000) -> list[str]:
    """Write the report of every run under ``runs_dir`` into ``out_dir``.

    Files: ``runs.csv`` (one row per run), ``curves.csv`` (mean curves of finished runs), ``summary.csv`` and
    ``summary.rst`` (the Table-1-style summary), ``diagnostics.rst`` (the dual's medians),
    ``differences.csv`` and ``.rst`` (OTPR minus each method, paired by seed),
    ``improvement.csv`` and ``.rst`` (rliable's probability of improvement, where there are enough seeds),
    ``time_to_success.csv`` and ``.rst`` (env steps and wall-clock to 0.8 success, :mod:`.time_to_success`),
    ``curves.png``
    (success vs env steps, one panel per task, as the paper's Fig. 2) and
    ``ablations.png`` (guidance and mask panels per task, as Fig. 3).

    Returns
    -------
    list of str
        The paths written.

    Raises
    ------
    FileNotFoundError
        If ``runs_dir`` holds no run.
    """
    runs, curves = load_runs(runs_dir)
    if runs.empty:
        raise FileNotFoundError(f"no runs (<task>/<method>/s<seed>/evaluations.csv) under `runs_dir` {runs_dir!r}")
    # Curves and plots of finished runs only: a mean over seeds that stopped at different steps would mislead.
    keys = ["task", "method", "seed"]
    curves = curves.merge(runs.loc[runs["done"], keys], on=keys)
    os.makedirs(out_dir, exist_ok=True)
    table = summary_table(runs, reps=reps)
    paths = {name: os.path.join(out_dir, name) for name in ("runs.csv", "curves.csv", "summary.csv", "summary.rst")}
    runs.to_csv(paths["runs.csv"], index=False)
    mean_curves(curves).to_csv(paths["curves.csv"], index=False)
    table.to_csv(paths["summary.csv"], index=False)
    with open(paths["summary.rst"], "w") as f:
        f.write(rst_table(table))
    written = list(paths.values())
    written.append(os.path.join(out_dir, "diagnostics.rst"))
    with open(written[-1], "w") as f:
        f.write(rst_diagnostics(table))
    diffs = paired_differences(runs)
    written += [os.path.join(out_dir, "differences.csv"), os.path.join(out_dir, "differences.rst")]
    diffs.to_csv(written[-2], index=False)
    with open(written[-1], "w") as f:
        f.write(rst_differences(diffs))
    timing = time_to_success(runs, curves)
    written += [os.path.join(out_dir, "time_to_success.csv"), os.path.join(out_dir, "time_to_success.rst")]
    timing.to_csv(written[-2], index=False)
    with open(written[-1], "w") as f:
        f.write(rst_time_to_success(timing))
    improvement = probability_of_improvement(runs, reps=reps)
    if not improvement.empty:
        written.append(os.path.join(out_dir, "improvement.csv"))
        improvement.to_csv(written[-1], index=False)
        written.append(os.path.join(out_dir, "improvement.rst"))
        with open(written[-1], "w") as f:
            f.write(rst_improvement(improvement))
    return written + _plots(runs, curves, out_dir)


def _plots(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: str) -> list[str]:
    """Write ``curves.png`` (one panel per task) and, where two of its methods ran, ``ablations.png``."""
    tasks = sorted(runs["task"].unique())
    written = [os.path.join(out_dir, "curves.png")]
    plot_panels(curves, [(t, t, None) for t in tasks], written[-1])
    panels = [(t, f"{t}: {name}", methods) for t in tasks for name, methods in ABLATIONS.items()]
    present = [
        p for p in panels if curves[(curves["task"] == p[0]) & curves["method"].isin(p[2] or ())]["method"].nunique() > 1
    ]
    if present:
        written.append(os.path.join(out_dir, "ablations.png"))
        plot_panels(curves, present, written[-1])
    return written
