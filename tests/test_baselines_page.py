"""docs/results.rst, "What the report decides": every number of the baselines study's verdict paragraph against the
committed report runs, their summary and their time-to-0.8 table."""

import csv
import json
import re
from pathlib import Path

import pytest
from otpr_helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
PAGE = " ".join((ROOT / "docs" / "results.rst").read_text().split())
STATUS = " ".join((ROOT / "docs" / "results_status.inc").read_text().split())
OUT = ROOT / "docs" / "results" / "baselines"


@pytest.fixture(scope="module")
def verdicts():
    module = load_script("examples/benchmarks/baselines_verdicts.py")
    runs = module.report_runs(str(ROOT / "results" / "baselines" / "report" / "runs"))
    assert len(runs) == 72  # "all 72 runs in"
    rows = {(r["task"], r["a"], r["b"]): r for r in module.comparisons(runs)}
    return module, runs, rows


def _method(name):
    """A tuned method's name without the hash of its settings (``dql-ebf1f03d`` -> ``dql``), as the page names it."""
    return re.sub(r"-[0-9a-f]{8}$", "", name)


def _summary():
    return {(r["task"], _method(r["method"])): r for r in csv.DictReader((OUT / "summary.csv").open())}


def test_claim_1_sentences(verdicts):
    module, runs, rows = verdicts
    pick, push = rows[("FetchPickAndPlace-v4", "otpr", "bc")], rows[("FetchPush-v4", "otpr", "bc")]
    for row in (pick, push):
        assert row["decision"].verdict == "holds"
    assert push["t"].verdict == "undecided" and push["t"].ci95[0] < 0 < push["t"].ci95[1]  # "still contains 0"
    d = pick["decision"]
    assert f"PickAndPlace {d.mean:+.2f} [{d.ci95[0]:+.2f}, {d.ci95[1]:+.2f}], 5 seeds" in PAGE
    d = push["decision"]
    assert f"Push {d.mean:+.2f} [{d.ci95[0]:+.2f}, {d.ci95[1]:+.2f}], 3 seeds" in PAGE
    level = module.claim1_level(runs)
    assert level["status"] == "not met" and level["level"] == 0.95
    s = _summary()
    otpr = s[("FetchPickAndPlace", "otpr")]
    assert f"{level['mean']:.2f}" == f"{float(otpr['final_success']):.2f}"
    sentence = (
        f"Its mean final success on PickAndPlace is {float(otpr['final_success']):.2f} ± "
        f"{float(otpr['final_success_se']):.2f} (IQM {float(otpr['iqm_final']):.2f}): the study's aim of 0.95 is not met"
    )
    assert sentence in PAGE
    # "the aim of 0.90 by 15,000 steps is": the report's PickAndPlace runs end at 15,000 steps
    lengths = {r["steps"] for r in csv.DictReader((OUT / "time_to_success.csv").open()) if r["task"] == "FetchPickAndPlace"}
    assert lengths == {"0", "15000"} and float(otpr["final_success"]) >= 0.90
    push_otpr = s[("FetchPush", "otpr")]
    assert float(push_otpr["final_success"]) < 0.90
    assert (
        f"On Push it ends at {float(push_otpr['final_success']):.2f} ± {float(push_otpr['final_success_se']):.2f} after "
        "30,000 steps, below the aim of 0.90" in PAGE
    )


def test_claim_2_sentences(verdicts):
    _, _, rows = verdicts
    pick = {b: r for (t, a, b), r in rows.items() if t == "FetchPickAndPlace-v4" and a == "otpr" and b != "bc"}
    holds = sorted(b for b, r in pick.items() if r["decision"].verdict == "holds")
    undecided = sorted(b for b, r in pick.items() if r["decision"].verdict == "undecided")
    assert holds == ["ibrl", "rlpd-her"] and undecided == ["diffusion-ql", "dql", "dsrl", "idql-n"]
    mean = {b: f"{r['decision'].mean:+.2f}" for b, r in pick.items()}
    assert f"OTPR is ahead of RLPD-HER ({mean['rlpd-her']}) and IBRL ({mean['ibrl']})" in PAGE
    dq = pick["diffusion-ql"]["decision"]
    assert (
        f"against IDQL-N ({mean['idql-n']}), DQL ({mean['dql']}), DSRL ({mean['dsrl']}) and Diffusion-QL "
        f"({dq.mean:+.2f} [{dq.ci95[0]:+.2f}, {dq.ci95[1]:+.2f}]), which would take"
    ).replace("+-", "-") in PAGE.replace("+-", "-")
    needed = [pick[b]["decision"].seeds_needed for b in undecided]
    assert f"take {min(needed)} to {max(needed)} seeds to decide" in PAGE
    s = _summary()
    finals = {m: float(r["final_success"]) for (t, m), r in s.items() if t == "FetchPickAndPlace" and m != "bc"}
    best = max(finals, key=finals.get)
    assert best == "diffusion-ql"
    dql, otpr = s[("FetchPickAndPlace", best)], s[("FetchPickAndPlace", "otpr")]
    assert (
        f"{float(dql['final_success']):.2f} ± {float(dql['final_success_se']):.2f} against OTPR's "
        f"{float(otpr['final_success']):.2f} ± {float(otpr['final_success_se']):.2f}" in PAGE
    )
    improvement = {_method(r["method"]): r for r in csv.DictReader((OUT / "improvement.csv").open())}
    p = improvement[best]
    assert (
        f"ends above a Diffusion-QL run is {float(p['probability_of_improvement']):.2f} "
        f"[{float(p['low']):.2f}, {float(p['high']):.2f}]" in PAGE
    )
    push = {b: r for (t, a, b), r in rows.items() if t == "FetchPush-v4" and a == "otpr" and b != "bc"}
    assert sorted(b for b, r in push.items() if r["decision"].verdict == "holds") == ["dql", "dsrl", "ibrl", "rlpd-her"]
    assert sorted(b for b, r in push.items() if r["t"].verdict == "holds") == ["dsrl", "ibrl"]
    assert sorted(b for b, r in push.items() if r["decision"].verdict == "undecided") == ["diffusion-ql", "idql-n"]
    assert (
        f"undecided against IDQL-N ({push['idql-n']['decision'].mean:+.2f}) and Diffusion-QL "
        f"({push['diffusion-ql']['decision'].mean:+.2f})" in PAGE
    )


def test_her_sentence(verdicts):
    _, _, rows = verdicts
    pick, push = rows[("FetchPickAndPlace-v4", "otpr-her", "otpr")], rows[("FetchPush-v4", "otpr-her", "otpr")]
    assert pick["decision"].verdict == "equivalent" and push["decision"].verdict == "undecided"
    assert f"equivalent to OTPR on PickAndPlace ({pick['decision'].mean:+.2f}, the 90% interval within ±0.05)" in PAGE
    assert f"undecided on Push ({push['decision'].mean:+.2f})" in PAGE


def test_time_to_08_sentence():
    rows = list(csv.DictReader((OUT / "time_to_success.csv").open()))
    steps = {
        (r["task"], _method(r["method"])): (int(float(r["steps_to_threshold"])) if r["steps_to_threshold"] else None)
        for r in rows
    }
    pick = {m: v for (t, m), v in steps.items() if t == "FetchPickAndPlace" and m != "bc"}
    assert pick["otpr-her"] == 2000 == min(v for v in pick.values() if v)
    assert {m for m, v in pick.items() if v == 3000} == {"otpr", "dql", "diffusion-ql"}
    assert (pick["idql-n"], pick["dsrl"], pick["ibrl"], pick["rlpd-her"]) == (5000, 6000, None, None)
    assert (
        "on PickAndPlace OTPR-HER first, at 2,000 steps, then OTPR, DQL and Diffusion-QL at 3,000, IDQL-N at 5,000 and "
        "DSRL at 6,000; IBRL and RLPD-HER never" in PAGE
    )
    push = {m: v for (t, m), v in steps.items() if t == "FetchPush" and v}
    assert push == {"otpr-her": 12000, "otpr": 24000}
    assert "On Push only OTPR-HER (12,000 steps) and OTPR (24,000) reach it" in PAGE


def test_table_and_improvement_are_on_the_page_and_the_status_note_agrees(verdicts):
    module, runs, _ = verdicts
    assert ".. include:: results/baselines/summary.rst" in PAGE and ".. include:: results/baselines/improvement.rst" in PAGE
    level = module.claim1_level(runs)
    s = _summary()
    assert f"at {level['mean']:.2f} on PickAndPlace (not the 0.95 aimed at)" in STATUS
    assert f"tuned Diffusion-QL ends at {float(s[('FetchPickAndPlace', 'diffusion-ql')]['final_success']):.2f}" in STATUS
    assert "finished its report on 2026-12-07 (72 runs)" in STATUS and "four baselines are undecided" in STATUS
    claims = " ".join((ROOT / "docs" / "results_claims.inc").read_text().split())
    assert f"claim 1 holds against BC there too, at {level['mean']:.2f} on PickAndPlace, and claim 2 is not shown" in claims


def test_push_failures_table_holds_the_eight_runs_whose_models_remained():
    record = json.loads((ROOT / "docs" / "data" / "baselines" / "failure_kinds_push.json").read_text())
    assert len(record["runs"]) == 8 and "holds the eight runs whose models remained" in PAGE
    assert all(r["seed"] in (1, 2) for r in record["runs"])


def test_readme_summary_is_the_report():
    readme = " ".join((ROOT / "README.md").read_text().split())
    s = _summary()
    bc, otpr = s[("FetchPickAndPlace", "bc")], s[("FetchPickAndPlace", "otpr")]
    best = s[("FetchPickAndPlace", "diffusion-ql")]
    assert (
        f"OTPR lifts BC from {float(bc['final_success']):.2f} to {float(otpr['final_success']):.2f} on "
        f"FetchPickAndPlace ({otpr['seeds']} seeds)" in readme
    )
    assert f"tuned Diffusion-QL ends higher ({float(best['final_success']):.2f})" in readme
