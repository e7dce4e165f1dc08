"""Verdicts of claims 1 and 2 (and of HER for OTPR) from the baselines study's report runs, by the page's rule.

The protocol is on docs/results.rst ("The baselines study"), fixed before the runs: the primary metric is the final
deterministic success; each comparison pairs two methods of one task by seed and applies
:func:`otpr_sb3.benchmark.decision.decide` with the study's seeds of that task as its minimum (``pending`` until
they are all in). A comparison whose runs do not share one code commit, or a seed whose two runs ran on two CPU
kinds, is refused (:func:`otpr_sb3.benchmark.decision.paired_seeds`)::

    python examples/benchmarks/baselines_verdicts.py   # writes docs/baselines_verdicts.inc

The runs are read from ``results/baselines/report/runs`` (``otpr report --collect`` puts them there).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from otpr_sb3.benchmark.collect import finished_runs
from otpr_sb3.benchmark.decision import decide, paired_seeds
from otpr_sb3.benchmark.report_rst import list_table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines_report_sweep import REPORT  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
RUNS = os.path.join(ROOT, "results", "baselines", "report", "runs")
OUT = os.path.join(ROOT, "docs", "baselines_verdicts.inc")
BASELINES = ("idql-n", "dql", "diffusion-ql", "rlpd-her", "ibrl", "dsrl")
#: (question, A, B): "A beats B", on the final deterministic success paired by seed.
COMPARISONS = (
    ("claim 1", "otpr", "bc"),
    *(("claim 2", "otpr", b) for b in BASELINES),
    ("HER for OTPR", "otpr-her", "otpr"),
)
#: Claim 1's level: OTPR's mean final success on this task must reach it (the study's aim).
CLAIM1_LEVEL = ("FetchPickAndPlace-v4", 0.95)


def report_runs(runs_dir: str = RUNS) -> list[dict[str, Any]]:
    """Every finished report run: task, method, seed, final deterministic success (the primary metric), commit and
    CPU kind. (A ``bc`` run has one evaluation, its final one.)"""
    return [
        {
            "task": spec["env_id"],
            "method": spec["method"],
            "seed": spec["seed"],
            "final": summary["final_success"],
            "commit": spec["provenance"]["commit"][:7],
            "cpu": spec["provenance"]["cpu"],
        }
        for _, spec, summary, _ in finished_runs(runs_dir)
    ]


def comparisons(
    runs: list[dict[str, Any]],
    seeds_by_task: dict[str, list[int]] | None = None,
    questions: tuple[tuple[str, str, str], ...] = COMPARISONS,
) -> list[dict[str, Any]]:
    """Per task of the study and comparison with runs on both sides: the paired seeds and the decision.

    Each row has the protocol's decision (``"decision"``, bootstrap intervals) and the same rule on Student-t
    intervals (``"t"``), the cautious reading at three to five seeds, added before any comparison was decided.
    ``seeds_by_task`` (the study's seeds of each task; this study's :data:`REPORT` by default) and ``questions``
    (``(question, A, B)``) let another study apply the same rule.

    Raises
    ------
    ValueError
        If the runs of a comparison do not share one commit, a paired seed's two runs ran on two CPU kinds, or a
        run's seed is not one of the study's seeds for its task.
    """
    out = []
    study = seeds_by_task if seeds_by_task is not None else {task: seeds for task, (_, seeds) in REPORT.items()}
    for task, seeds in study.items():
        for question, a, b in questions:
            first = {r["seed"]: r for r in runs if (r["task"], r["method"]) == (task, a)}
            second = {r["seed"]: r for r in runs if (r["task"], r["method"]) == (task, b)}
            if not first or not second:
                continue
            stray = sorted((set(first) | set(second)) - set(seeds))
            if stray:
                raise ValueError(f"{task}: seeds {stray} of {a} or {b} are not the study's ({seeds})")
            paired = paired_seeds(first, second, f"{task}: {a} against {b}")
            diffs = np.array([first[s]["final"] - second[s]["final"] for s in paired])
            decision = decide(diffs, min_seeds=len(seeds)) if len(paired) else None
            cautious = decide(diffs, min_seeds=len(seeds), interval="t") if len(paired) else None
            out.append(
                {"task": task, "question": question, "a": a, "b": b, "seeds": paired, "decision": decision, "t": cautious}
            )
    return out


def claim1_level(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTPR's mean final success on :data:`CLAIM1_LEVEL`'s task against the level: ``met``, ``not met`` or
    ``pending`` (until every seed of the study is in)."""
    task, level = CLAIM1_LEVEL
    finals = [r["final"] for r in runs if (r["task"], r["method"]) == (task, "otpr")]
    seeds = REPORT[task][1]
    mean = float(np.mean(finals)) if finals else float("nan")
    status = "pending" if len(finals) < len(seeds) else ("met" if mean >= level else "not met")
    return {"task": task, "level": level, "runs": len(finals), "mean": mean, "status": status}


def verdicts_table(rows: list[dict[str, Any]]) -> str:
    """:func:`comparisons` as an RST list table."""
    body = []
    for r in rows:
        d, dt = r["decision"], r["t"]
        interval = "" if d is None else f"[{d.ci95[0]:+.2f}, {d.ci95[1]:+.2f}]"
        interval_t = "" if dt is None or len(r["seeds"]) < 2 else f"[{dt.ci95[0]:+.2f}, {dt.ci95[1]:+.2f}]"
        needed = "" if d is None or d.seeds_needed is None else str(d.seeds_needed)
        body.append(
            [
                r["task"],
                r["question"],
                f"{r['a']} - {r['b']}",
                str(len(r["seeds"])),
                "" if d is None else f"{d.mean:+.2f}",
                interval,
                "pending" if d is None else d.verdict,
                needed,
                interval_t,
                "pending" if dt is None else dt.verdict,
            ]
        )
    header = [
        "task",
        "question",
        "A - B",
        "paired seeds",
        "mean",
        "95% CI",
        "verdict",
        "seeds that would decide",
        "95% CI (Student t)",
        "verdict on t intervals",
    ]
    return list_table(header, body)


def page_text(runs: list[dict[str, Any]]) -> str:
    """The include: the runs in so far, the verdicts table and claim 1's level."""
    if not runs:
        return "No report run has finished yet.\n"
    done = sorted({(r["task"], r["method"]) for r in runs})
    counts = ", ".join(f"{m} on {t} ({sum(1 for r in runs if (r['task'], r['method']) == (t, m))})" for t, m in done)
    level = claim1_level(runs)
    mean = (
        "no run yet"
        if not level["runs"]
        else f"{level['mean']:.2f} over {level['runs']} seed{'s' if level['runs'] > 1 else ''}"
    )
    return (
        f"Report runs finished so far, per method and task: {counts}.\n\n"
        + verdicts_table(comparisons(runs))
        + f"\nClaim 1's level on {level['task']}: OTPR's mean final success {mean}, against {level['level']:.2f}: "
        + f"**{level['status']}**.\n"
    )


def main() -> None:
    text = page_text(report_runs())  # before opening the include: a failure leaves it as it was
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
