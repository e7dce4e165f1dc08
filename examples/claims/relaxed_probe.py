"""Does relaxing the action marginal remove H's stall? The probe runs of ``examples/sweeps/claims_relaxed_probe.toml``.

The stall probe (``stall_probe.py``) puts H's stall at the object on the action potential ``v``: the critic prefers
closing the fingers there and ``v`` takes that preference back, because closing actions are over-demanded against
the replay's action marginal, which the balanced dual enforces. Relaxing that marginal with strength ``rho``
(``dual_kwargs={"unbalanced": rho}``, :mod:`neural_ot.relaxation`) bounds what ``v`` can take back: at the optimum
``v = rho (1 - q)`` for an action whose plan density is ``q``. ``rho = inf`` is today's H; ``rho -> 0`` is a
thresholded critic weight.

The probe: for every finished run (regime (a), unmasked H, tuning seeds 100-101): its curve's numbers, the
dual's diagnostics after it started guiding (``summary.json``), and its final model's failed episodes by kind,
deterministic and sampled (``failure_kinds.classify_run``: the stall is ``"reached, fingers open"``). Runs already in
``--out`` are skipped, so the script resumes; ``--table`` writes the page's table from the record::

    python examples/claims/relaxed_probe.py --runs-dir outputs/claims_relaxed/runs --out docs/data/claims/relaxed_probe.json
    python examples/claims/relaxed_probe.py --table docs/claims_relaxed.inc

The regime (c) probe (``examples/sweeps/claims_relaxed_probe_c.toml``: unmasked H relaxed at ``rho = 1`` and
balanced, and the advantage arm, on the mixed-quality demonstrations) goes to its own record and table::

    python examples/claims/relaxed_probe.py --runs-dir RUNS --out docs/data/claims/relaxed_probe_c.json
    python examples/claims/relaxed_probe.py --out docs/data/claims/relaxed_probe_c.json --table docs/claims_relaxed_c.inc

The report (``examples/sweeps/claims_relaxed_report.toml``, seeds 0-9, collected in ``results/claims/relaxed_report/runs``):
``--report`` writes its verdicts, by the claims protocol's decision rule, to ``docs/claims_relaxed_verdicts.inc``, and
the stalls of its two H arms (classified into ``docs/data/claims/relaxed_report_stalls.json`` with ``--runs-dir`` a
folder holding only those arms' run folders, while their final models exist) to
``docs/claims_relaxed_report_stalls.inc``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

import torch as th
from claims_tables import ROOT, run_record
from claims_verdicts import report_runs, verdict_table, verdicts
from failure_kinds import classify_run, load_record, runs_to_classify, write_record

from otpr_sb3.benchmark.evaluation import read_evaluations
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.report_rst import list_table

RECORD = os.path.join(ROOT, "docs", "data", "claims", "relaxed_probe.json")
REPORT = os.path.join(ROOT, "results", "claims", "relaxed_report", "runs")
#: The report's two H arms' final models classified as the probe's (``--runs-dir`` a folder with those arms only).
STALLS = os.path.join(ROOT, "docs", "data", "claims", "relaxed_report_stalls.json")
STALL = "reached, fingers open"
RELAXED = "H, unmasked, action marginal relaxed"
#: The guidance of a probe run's method, for records that hold more than OTPR's H (the regime (c) probe).
GUIDANCE = {"otpr": "H, unmasked", "otpr-adv": "advantage"}
#: The report's comparisons, ``(label, arm A, arm B)``: "A beats B".
COMPARISONS = (("relaxed", RELAXED, "H, unmasked"), ("relaxed", RELAXED, "advantage"))


def report_verdicts(runs_dir: str = REPORT) -> str:
    """The report's verdicts as an RST table (a sentence while no seed of a comparison is paired)."""
    rows = verdicts(report_runs(runs_dir), COMPARISONS) if os.path.isdir(runs_dir) else []
    return verdict_table(rows) if rows else "No seed of the report has finished in every arm yet.\n"


def report_stalls(path: str = STALLS) -> str:
    """The report's H arms classified so far: the table, and a sentence on the seeds both arms have."""
    with open(path) as f:
        runs = json.load(f)["runs"]
    stalls: dict[str, dict[int, int]] = {"1.0": {}, "inf": {}}
    for r in runs:
        stalls[str(r["rho"])][r["seed"]] = r["deterministic"][STALL]
    seeds = sorted(set(stalls["1.0"]) & set(stalls["inf"]))
    if not seeds:
        return table(path) + "\nNo seed has both H arms classified yet.\n"
    relaxed, balanced = ([stalls[k][s] for s in seeds] for k in ("1.0", "inf"))
    fewer = sum(r < b for r, b in zip(relaxed, balanced))
    return table(path) + (
        f"\nOn the {len(seeds)} seeds with both H arms classified ({', '.join(map(str, seeds))}), the deterministic "
        f"final models stall at the object in {sum(relaxed) / len(seeds):.1f} of 100 episodes on average with "
        f"``rho = 1`` and {sum(balanced) / len(seeds):.1f} with the balanced dual; fewer with ``rho = 1`` on {fewer} of "
        f"the {len(seeds)} seeds.\n"
    )


def rho_of(spec: dict[str, Any]) -> float:
    """The run's relaxation strength (``inf``: the balanced dual)."""
    rho = spec["kwargs"].get("dual_kwargs", {}).get("unbalanced")
    return math.inf if rho is None else float(rho)


def probe_entry(run_dir: str, name: str, episodes: int) -> dict[str, Any]:
    """The record of the finished probe run in ``run_dir`` (classifies its final model: a few minutes)."""
    with open(os.path.join(run_dir, "spec.json")) as f:
        spec = json.load(f)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    run = run_record(spec, summary, read_evaluations(os.path.join(run_dir, "evaluations.csv")))
    diagnostics = summary.get("diagnostics", {})
    return {
        "run": name,
        "method": spec["method"],
        "rho": "inf" if rho_of(spec) == math.inf else rho_of(spec),
        "seed": spec["seed"],
        "start": summary["start_success"],
        "final": run["final"],
        "last_five": run["last_five"],
        "auc": run["auc"],
        **{k: diagnostics.get(k) for k in ("marginal_error", "action_marginal_shift", "h_nonzero_frac")},
        **classify_run(run_dir, spec, episodes),
        "commit": run["commit"],
        "cpu": run["cpu"],
        "provenance": provenance("cpu"),
    }


def table(path: str = RECORD) -> str:
    """The probe's record as an RST list table: a row per run, balanced first, then by falling ``rho`` and seed.

    A record with runs of other guidances (the regime (c) probe's advantage arm) gets a first column naming the
    guidance, and those runs come last.
    """
    with open(path) as f:
        runs = json.load(f)["runs"]

    def method(r: dict[str, Any]) -> str:
        return r.get("method", "otpr")  # records before the regime (c) probe hold OTPR's runs only

    guidances = {method(r) for r in runs} != {"otpr"}

    def order(r: dict[str, Any]) -> tuple[bool, float, int]:
        return (method(r) != "otpr", -math.inf if r["rho"] == "inf" else -float(r["rho"]), r["seed"])

    def num(value: float | None, fmt: str = ".2f") -> str:
        return "" if value is None else format(value, fmt)

    body = [
        [
            *([GUIDANCE.get(method(r), method(r))] if guidances else []),
            "" if method(r) != "otpr" else "inf (balanced)" if r["rho"] == "inf" else f"{float(r['rho']):g}",
            str(r["seed"]),
            num(r["start"]),
            num(r["final"]),
            num(r["sampled"]["success"]),
            str(r["deterministic"][STALL]),
            str(r["sampled"][STALL]),
            num(r["last_five"]),
            num(r["action_marginal_shift"]),
            num(r["marginal_error"]),
            num(r["h_nonzero_frac"]),
        ]
        for r in sorted(runs, key=order)
    ]
    header = [
        *(["guidance"] if guidances else []),
        "rho",
        "seed",
        "start",
        "final, deterministic",
        "final, sampled",
        "stalls, deterministic",
        "stalls, sampled",
        "last five",
        "action marginal moved",
        "marginal error",
        "H > 0 share",
    ]
    return list_table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="outputs/claims_relaxed/runs")
    parser.add_argument("--out", default=RECORD)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--table", help="write the table of --out's record to this file instead")
    parser.add_argument("--report", action="store_true", help="write the report's verdicts to the docs instead")
    args = parser.parse_args()
    if args.report:
        with open(os.path.join(ROOT, "docs", "claims_relaxed_verdicts.inc"), "w") as f:
            f.write(report_verdicts())
        with open(os.path.join(ROOT, "docs", "claims_relaxed_report_stalls.inc"), "w") as f:
            f.write(report_stalls())
        return
    if args.table:
        with open(args.table, "w") as f:
            f.write(table(args.out))
        return
    th.set_num_threads(1)
    record = load_record(args.out, {"episodes": args.episodes, "runs": []})
    for run_dir, name in runs_to_classify(args.runs_dir, {r["run"] for r in record["runs"]}):
        record["runs"].append(probe_entry(run_dir, name, args.episodes))
        print(json.dumps({k: v for k, v in record["runs"][-1].items() if k != "provenance"}), flush=True)
        write_record(record, args.out)


if __name__ == "__main__":
    main()
