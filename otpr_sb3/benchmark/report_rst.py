"""reStructuredText pieces of the benchmark report.

List tables of the summary, the diagnostics, the paired differences and the probabilities of improvement.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from otpr_sb3.benchmark.diagnostics import TAGS

#: The diagnostics' names in the run summaries, in the order of the tables.
DIAGNOSTICS = tuple(TAGS.values())


def list_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return an RST ``list-table`` with one header row; an empty or ``-`` cell is written ``n/a``.

    (A cell holding only ``-`` would be read as a bullet list, an empty one as an empty item.)
    """
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [headers, *rows]:
        cells = [cell if str(cell).strip() not in ("", "-") else "n/a" for cell in row]
        lines += [f"   {'*' if i == 0 else ' '} - {cell}" for i, cell in enumerate(cells)]
    return "\n".join(lines) + "\n"


def rst_table(table: pd.DataFrame) -> str:
    """Return the summary table (:func:`~otpr_sb3.benchmark.report.summary_table`) as RST."""

    def pm(mean: float, se: float) -> str:
        if not np.isfinite(mean):
            return "n/a"
        return f"{mean:.2f}" + (f" ± {se:.2f}" if np.isfinite(se) else "")

    headers: tuple[str, ...] = ("task", "method", "seeds", "start", "final", "AUC", "IQM final [95% CI]", "min per run")
    # Where runs come from different code or CPUs, each row says which (a reader must know what is compared).
    show = any(len({c for v in table.get(col, []) for c in v.split(", ")}) > 1 for col in ("commits", "cpus"))
    if show:
        headers = (*headers, "commits", "CPUs")
    # Runs that evaluated their final model acting as it collects, too (older records did not).
    stochastic = bool(np.isfinite(table.get("final_stochastic", pd.Series(dtype=float)).to_numpy(float)).any())
    if stochastic:
        headers = (*headers[:5], "final, stochastic", *headers[5:])
    rows = []
    for _, r in table.iterrows():
        iqm = f"{r.iqm_final:.2f} [{r.iqm_low:.2f}, {r.iqm_high:.2f}]" if np.isfinite(r.iqm_final) else "n/a"
        seeds = f"{r.seeds}" + (f" (+{r.unfinished} running)" if r.unfinished else "")
        rows.append(
            (
                r.task,
                r.method,
                seeds,
                pm(r.start_success, r.start_success_se),
                pm(r.final_success, r.final_success_se),
                *((pm(r.final_stochastic, r.final_stochastic_se),) if stochastic else ()),
                pm(r.auc, r.auc_se),
                iqm,
                f"{r.wall_time_min:.0f}" if np.isfinite(r.wall_time_min) else "n/a",
                *((r.commits, r.cpus) if show else ()),
            )
        )
    return list_table(headers, rows)


def rst_diagnostics(table: pd.DataFrame) -> str:
    """Return the dual diagnostics of the summary table as RST."""
    shown = table[np.isfinite(table[list(DIAGNOSTICS)].to_numpy(float)).any(axis=1)]
    headers = ["task", "method", "seeds", "marginal error", "dual gap", "share of weights > 0", "H fallback share"]
    headers.append("weight entropy")
    rows = [
        (r.task, r.method, f"{r.seeds}", *(f"{r[name]:.3f}" if np.isfinite(r[name]) else "n/a" for name in DIAGNOSTICS))
        for _, r in shown.iterrows()
    ]
    return list_table(headers, rows)


def rst_differences(diffs: pd.DataFrame) -> str:
    """Return the paired differences (:func:`~otpr_sb3.benchmark.report.paired_differences`) as RST."""

    def pm(mean: float, se: float) -> str:
        return f"{mean:+.2f}" + (f" ± {se:.2f}" if np.isfinite(se) else "")

    headers = ("task", "OTPR minus", "paired seeds", "final success", "AUC", "seeds OTPR ahead")
    rows = [
        (
            r.task,
            r.method,
            f"{r.seeds}",
            pm(r.final_success_diff, r.final_success_diff_se),
            pm(r.auc_diff, r.auc_diff_se),
            f"{r.wins} of {r.seeds}",
        )
        for _, r in diffs.iterrows()
    ]
    return list_table(headers, rows)


def rst_improvement(improvement: pd.DataFrame) -> str:
    """Return the probabilities of improvement as RST."""
    rows = [
        (r.task, r.method, f"{r.probability_of_improvement:.2f} [{r.low:.2f}, {r.high:.2f}]")
        for _, r in improvement.iterrows()
    ]
    return list_table(("task", "method", "P(OTPR > method) [95% CI]"), rows)


def write_includes(texts: dict[str, str], directory: str) -> list[str]:
    """Write each ``name -> text`` to ``directory/name`` (the docs' generated includes); return the paths."""
    paths = []
    for name, text in texts.items():
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths
