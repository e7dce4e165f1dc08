"""Verdicts of claims 3 and 4 from the committed report runs (``results/claims/report/runs``), by the page's rule.

Each comparison pairs two arms of one regime by seed, on both primary metrics (last-five mean success and AUC),
and applies :func:`otpr_sb3.benchmark.decision.decide`. A comparison whose runs do not share one code commit, or a
seed whose two runs ran on two CPU kinds, is refused (:func:`otpr_sb3.benchmark.decision.paired_seeds`)::

    python examples/claims/claims_verdicts.py     # writes docs/claims_report_runs.inc, claims_live.inc, claims_verdicts.inc,
                                                  # claims_failures.inc (from examples/claims/failure_kinds.py's record)
                                                  # and the curves, docs/_static/claims_report_curves.png
    python examples/claims/claims_verdicts.py --wave candidates   # the second wave's report runs
                                                  # (results/claims/candidates_report/runs): docs/claims_candidates_*.inc
                                                  # and docs/_static/claims_candidates_report_curves.png, once it has runs
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
from claims_tables import ARMS, ROOT, finished_runs, run_record
from report_sweep import FEW, MIXED, MULTIMODAL

from otpr_sb3.benchmark.decision import bootstrap_interval, decide, paired_seeds
from otpr_sb3.benchmark.failures import CATEGORIES, NO_GRASP_KINDS
from otpr_sb3.benchmark.report import plot_panels
from otpr_sb3.benchmark.report_rst import list_table, write_includes
from otpr_sb3.benchmark.run_spec import default_dataset_id

REPORT = os.path.join(ROOT, "results", "claims", "report", "runs")
FIGURE = os.path.join(ROOT, "docs", "_static", "claims_report_curves.png")
#: Wave -> its report runs and the stem of its tables and figure (``report_sweep.WAVES`` writes the sweeps). The
#: second wave's arms run at one commit of their own, so its verdicts compare its arms with each other only.
WAVES = {
    "first": (REPORT, "claims"),
    "candidates": (os.path.join(ROOT, "results", "claims", "candidates_report", "runs"), "claims_candidates"),
}
FAILURES = os.path.join(ROOT, "docs", "data", "claims", "failure_kinds.json")
STALLS = os.path.join(ROOT, "docs", "data", "claims", "stall_probe.json")
#: The columns of the stall probe's table (``examples/claims/stall_probe.py``): record key -> header.
STALL_COLUMNS = {
    "stalled": "stalled episodes (of 30)",
    "h_gripper": "H: gripper command",
    "h_critic_cost": "H: critic cost, close - open",
    "h_cost": "H: cost, close - open",
    "h_v": "H: v, close - open",
    "h_score": "H: z, close - open",
    "adv_gripper": "advantage: gripper command",
    "adv_score": "advantage: score, close - open",
    "replay_closing_share": "replay: share of closing actions",
    "critic_prefers_close_share": "replay: share of states where H's critic prefers closing",
}
# (claim, arm A, arm B): the claim is "A beats B". The authors' release is compared with H for the reader; it is
# not one of the paper's claims.
COMPARISONS = (
    ("3", "H", "Q"),
    ("3", "H", "advantage"),
    ("4", "H", "H, unmasked"),
    ("none", "H", "authors' release"),
)
METRICS = (("last five", "last_five"), ("AUC", "auc"))


def regime_of(env_id: str, dataset: str) -> str:
    """The regime (``"a"`` to ``"d"``) whose demonstrations ``dataset`` is; any other dataset is refused."""
    regimes = {default_dataset_id(env_id): "a", FEW: "b", MIXED: "c", MULTIMODAL: "d"}
    if dataset not in regimes:
        raise ValueError(f"{dataset!r} is not the dataset of a regime of the protocol: {sorted(regimes)}")
    return regimes[dataset]


def report_runs(runs_dir: str = REPORT) -> list[dict[str, Any]]:
    """The finished report runs: regime, arm, seed, both primary metrics, commit and CPU."""
    out = []
    for _, spec, summary, rows in finished_runs(runs_dir):
        record = {"regime": regime_of(spec["env_id"], spec["dataset"]), **run_record(spec, summary, rows)}
        out.append({**record, "diagnostics": summary.get("diagnostics", {}), "evaluations": rows})
    return out


#: Live diagnostics of a run (medians over the run after the dual is ready; ``otpr_sb3.benchmark.diagnostics``).
LIVE = (
    ("marginal_error", "held-out marginal error"),
    ("dual_gap", "dual gap"),
    ("h_nonzero_frac", "pairs with weight > 0"),
    ("weight_entropy", "actor weight entropy"),
    ("h_fallback_frac", "collection fallback share"),
)


def live_diagnostics(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per regime and arm: the number of runs and the median over them of each :data:`LIVE` diagnostic (None if absent)."""
    out = []
    for regime in sorted({r["regime"] for r in runs}):
        for arm in ARMS:
            mine = [r["diagnostics"] for r in runs if (r["regime"], r["arm"]) == (regime, arm)]
            if not mine:
                continue
            row: dict[str, Any] = {"regime": regime, "arm": arm, "runs": len(mine)}
            for key, _ in LIVE:
                values = [d[key] for d in mine if key in d]
                row[key] = float(np.median(values)) if values else None
            out.append(row)
    return out


def live_table(rows: list[dict[str, Any]]) -> str:
    """:func:`live_diagnostics` as an RST list table (n/a where an arm has no dual)."""
    body = [
        [f"({r['regime']})", r["arm"], str(r["runs"])] + ["" if r[k] is None else f"{r[k]:.3f}" for k, _ in LIVE] for r in rows
    ]
    return list_table(["regime", "arm", "runs", *(label for _, label in LIVE)], body)


def failure_record(path: str = FAILURES) -> dict[str, Any] | None:
    """The record of ``examples/claims/failure_kinds.py`` (None if it has not been made)."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return dict(json.load(f))


def failure_kinds(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per regime, arm and way of acting, from :func:`failure_record`: runs, mean success, and the mean number of
    failed episodes of each kind per run (of the record's episodes, 100)."""
    out = []
    bc = [{**r, "arm": "BC (start)"} for r in record.get("bc", [])]  # the pretrained actor the arms start from
    for regime in sorted({r["regime"] for r in record["runs"]}):
        for arm in ("BC (start)", *ARMS):
            mine = [r for r in record["runs"] + bc if (r["regime"], r["arm"]) == (regime, arm)]
            for how in record["acting"] if mine else ():
                means = {key: float(np.mean([r[how][key] for r in mine])) for key in ("success", *CATEGORIES, *NO_GRASP_KINDS)}
                out.append({"regime": regime, "arm": arm, "acting": how, "runs": len(mine), **means})
    return out


def failures_table(rows: list[dict[str, Any]]) -> str:
    """:func:`failure_kinds` as an RST list table: the kinds of ``"no grasp"`` in its place, then the other kinds."""
    kinds = (*NO_GRASP_KINDS, *CATEGORIES[1:])
    body = [
        [f"({r['regime']})", r["arm"], r["acting"], str(r["runs"]), f"{r['success']:.2f}", *(f"{r[k]:.1f}" for k in kinds)]
        for r in rows
    ]
    header = ["regime", "arm", "acting", "runs", "success", *(f"no grasp: {k}" for k in NO_GRASP_KINDS), *CATEGORIES[1:]]
    return list_table(header, body)


def acting_differences(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per regime, comparison and way of acting (:func:`failure_record`): the paired difference of the final models'
    success (A minus B).

    Exploratory, not a verdict: the protocol's metrics are the harness's deterministic evaluations. Each row has the
    paired seeds, the mean difference and its 95% bootstrap interval.
    """
    rows = []
    for regime in sorted({r["regime"] for r in record["runs"]}):
        for _, a, b in COMPARISONS:
            first = {r["seed"]: r for r in record["runs"] if (r["regime"], r["arm"]) == (regime, a)}
            second = {r["seed"]: r for r in record["runs"] if (r["regime"], r["arm"]) == (regime, b)}
            seeds = sorted(set(first) & set(second))
            for how in record["acting"] if len(seeds) >= 2 else ():
                diffs = np.array([first[s][how]["success"] - second[s][how]["success"] for s in seeds])
                lo, hi = bootstrap_interval(diffs, 0.95)
                rows.append(
                    {"regime": regime, "comparison": f"{a} - {b}", "acting": how, "seeds": len(seeds)}
                    | {"mean": float(diffs.mean()), "lo": lo, "hi": hi}
                )
    return rows


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]"


def acting_table(rows: list[dict[str, Any]]) -> str:
    """:func:`acting_differences` as an RST list table."""
    body = [
        [
            f"({r['regime']})",
            r["comparison"],
            r["acting"],
            str(r["seeds"]),
            f"{r['mean']:+.3f}",
            _interval(r["lo"], r["hi"]),
        ]
        for r in rows
    ]
    return list_table(["regime", "A - B", "acting", "seeds", "mean", "95% CI"], body)


def stall_table(path: str = STALLS) -> str | None:
    """The stall probe's record as an RST list table, a row per seed (None if the record has not been made)."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = json.load(f)["rows"]

    def cell(key: str, value: float) -> str:
        return str(value) if key == "stalled" else f"{value:.2f}" if key.endswith("share") else f"{value:+.2f}"

    body = [[str(r["seed"]), *(cell(k, r[k]) for k in STALL_COLUMNS)] for r in rows]
    return list_table(["seed", *STALL_COLUMNS.values()], body)


def runs_table(runs: list[dict[str, Any]]) -> str:
    """Every finished report run, by regime, seed and arm."""
    order = {arm: i for i, arm in enumerate(ARMS)}
    rows = [
        [
            f"({r['regime']})",
            str(r["seed"]),
            r["arm"],
            f"{r['last_five']:.2f}",
            f"{r['auc']:.2f}",
            f"{r['final']:.2f}",
            f"{r['env_steps_per_s']:.1f}",
            r["commit"],
            r["cpu"],
        ]
        for r in sorted(runs, key=lambda r: (r["regime"], r["seed"], order[r["arm"]]))
    ]
    header = ["regime", "seed", "arm", "last five", "AUC", "final (100 episodes)", "env steps/s", "commit", "CPU"]
    return list_table(header, rows)


def tables(runs_dir: str = REPORT, failures_path: str | None = FAILURES) -> dict[str, str]:
    """File name -> content: the finished runs, the verdicts once a comparison has a paired seed, and the failure
    kinds if ``failures_path`` (the record of ``failure_kinds.py``) is given and exists."""
    return tables_of(report_runs(runs_dir), failures_path)


def tables_of(runs: list[dict[str, Any]], failures_path: str | None = FAILURES, stem: str = "claims") -> dict[str, str]:
    """:func:`tables` of the records :func:`report_runs` read; ``stem`` starts the file names (``WAVES``)."""
    out = {f"{stem}_report_runs.inc": runs_table(runs), f"{stem}_live.inc": live_table(live_diagnostics(runs))} if runs else {}
    stalls = stall_table() if failures_path else None
    if stalls:
        out["claims_stalls.inc"] = stalls
    record = failure_record(failures_path) if failures_path else None
    if record:
        out["claims_failures.inc"] = failures_table(failure_kinds(record))
        out["claims_acting.inc"] = acting_table(acting_differences(record))
    rows = verdicts(runs)
    if rows:
        out[f"{stem}_verdicts.inc"] = verdict_table(rows)
    return out


def verdicts(runs: list[dict[str, Any]], comparisons: tuple[tuple[str, str, str], ...] = COMPARISONS) -> list[dict[str, Any]]:
    """One row per regime, comparison (``(claim, arm A, arm B)``) and metric that has at least one paired seed.

    ``"decision"`` is the protocol's (bootstrap intervals); ``"t"`` applies the same rule to Student-t intervals, a
    check added after regimes (a) and (c) were decided, which changes none of their verdicts on the page.
    """
    rows = []
    for regime in ("a", "b", "c", "d"):
        for claim, a, b in comparisons:
            first = {r["seed"]: r for r in runs if (r["regime"], r["arm"]) == (regime, a)}
            second = {r["seed"]: r for r in runs if (r["regime"], r["arm"]) == (regime, b)}
            seeds = paired_seeds(first, second, f"regime ({regime}) {a} vs {b}")
            if not seeds:
                continue
            for label, key in METRICS:
                diffs = [first[s][key] - second[s][key] for s in seeds]
                rows.append(
                    {
                        "claim": claim,
                        "regime": regime,
                        "comparison": f"{a} - {b}",
                        "metric": label,
                        "decision": decide(diffs),
                        "t": decide(diffs, interval="t"),
                        "commit": first[seeds[0]]["commit"],
                    }
                )
    return rows


def verdict_table(rows: list[dict[str, Any]]) -> str:
    """The verdicts as an RST list table."""
    body = []
    for r in rows:
        d, dt = r["decision"], r["t"]
        body.append(
            [
                r["claim"],
                f"({r['regime']})",
                r["comparison"],
                r["metric"],
                str(d.seeds),
                f"{d.mean:+.3f}",
                _interval(*d.ci95),
                _interval(*d.ci90),
                d.verdict,
                "" if d.seeds_needed is None else str(d.seeds_needed),
                _interval(*dt.ci95) if d.seeds > 1 else "",
                dt.verdict,
            ]
        )
    header = ["claim", "regime", "A - B", "metric", "seeds", "mean", "95% CI", "90% CI", "verdict", "seeds to decide"]
    header += ["95% CI (Student t)", "verdict on t intervals"]
    return list_table(header, body)


def report_curves(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Every evaluation of the report runs (the first and the last of 100 episodes, the others of 20).

    ``runs`` are :func:`report_runs`' records; ``task`` is the regime and ``method`` the arm.
    """
    rows = []
    for r in runs:
        task = f"regime ({r['regime']})"
        rows += [
            {"task": task, "method": r["arm"], "seed": r["seed"], "timesteps": e["timesteps"], "success": e["success"]}
            for e in r["evaluations"]
        ]
    return pd.DataFrame(rows, columns=["task", "method", "seed", "timesteps", "success"])


def arm_color(arm: str) -> Any:
    """One colour per arm of the protocol (tab10, in the order of ``ARMS``)."""
    import matplotlib

    return matplotlib.colormaps["tab10"].colors[ARMS.index(arm)]  # type: ignore[attr-defined]


def curves_figure(runs: list[dict[str, Any]], path: str = FIGURE) -> str | None:
    """Draw the report runs' curves, a panel per regime that has runs, on the seeds every arm has; None if no runs."""
    curves = report_curves(runs)
    if curves.empty:
        return None
    regimes = sorted(curves["task"].unique())
    panels = [(r, f"FetchPickAndPlace-v4, {r}", ARMS) for r in regimes]
    plot_panels(curves, panels, path, color=arm_color)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wave", choices=sorted(WAVES), default="first")
    args = parser.parse_args()
    runs_dir, stem = WAVES[args.wave]
    report = report_runs(runs_dir)
    # The failure kinds and the stall probe are records of the first wave's final models.
    included = tables_of(report, FAILURES if args.wave == "first" else None, stem)
    for path in write_includes(included, os.path.join(ROOT, "docs")):
        print("wrote", os.path.relpath(path, ROOT))
    figure = curves_figure(report, os.path.join(ROOT, "docs", "_static", f"{stem}_report_curves.png"))
    if figure:
        print("wrote", os.path.relpath(figure, ROOT))
    if not report:
        print(f"no finished report run in {os.path.relpath(runs_dir, ROOT)}: nothing written")
