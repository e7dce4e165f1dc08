"""docs/results.rst, "Beyond Fetch": the decision rule's verdicts are the committed runs' and the rule is as written."""

import json
from pathlib import Path

import pytest
from otpr_helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
PAGE = " ".join((ROOT / "docs" / "results.rst").read_text().split())


def _module():
    return load_script("examples/benchmarks/beyond_fetch_verdicts.py")


def _run(root, task, method, seed, final, cpu="Intel(R) Xeon(R) Processor"):
    run_dir = root / task.split("-")[0] / method / f"s{seed}"
    run_dir.mkdir(parents=True)
    spec = {"env_id": task, "method": method, "seed": seed, "provenance": {"commit": "76abd7f" + "0" * 33, "cpu": cpu}}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    (run_dir / "summary.json").write_text(json.dumps({"final_success": final}))
    (run_dir / "evaluations.csv").write_text(f"timesteps,success,episodes,final,wall_time\n0,{final},50,1,0.0\n")


def test_the_include_is_the_verdicts_of_the_collected_runs():
    module = _module()
    text = module.page_text(module.all_runs(), module.study_runs())
    assert (ROOT / "docs" / "beyond_fetch_verdicts.inc").read_text() == text
    assert ".. include:: beyond_fetch_verdicts.inc" in PAGE


def test_every_task_plans_bc_otpr_and_diffusion_ql_on_three_seeds():
    module = _module()
    planned = module.study_runs()
    assert len(planned) == 6 and sum(len(p) for p in planned.values()) == 54  # "12 of the 54 runs"
    for runs in planned.values():
        assert sorted(runs) == sorted((m, s) for m in ("bc", "diffusion-ql", "otpr") for s in (0, 1, 2))
    assert {a for _, a, _ in module.QUESTIONS} == {"otpr"} and {b for *_, b in module.QUESTIONS} == {"bc", "diffusion-ql"}


def test_the_runs_in_when_the_rule_was_fixed():
    # "seed 0 of BC, OTPR and Diffusion-QL on Meta-World PickPlace and PegInsertSide and on robosuite PickPlaceCan, of
    # BC and OTPR on Meta-World Assembly and of BC on NutAssemblySquare"
    listed = [
        (t, m) for t in ("MetaWorldPickPlace", "MetaWorldPegInsertSide") for m in ("bc", "otpr", "diffusion-ql-ebf1f03d")
    ]
    listed += [("RobosuitePickPlaceCan", m) for m in ("bc", "otpr", "diffusion-ql-ebf1f03d")]
    listed += [("MetaWorldAssembly", "bc"), ("MetaWorldAssembly", "otpr"), ("RobosuiteNutAssemblySquare", "bc")]
    assert len(listed) == 12 and "when 12 of the 54 runs were in" in PAGE
    for task, method in listed:
        family = "metaworld" if task.startswith("MetaWorld") else "robosuite"
        assert (ROOT / "results" / family / "runs" / task / method / "s0" / "summary.json").exists(), (task, method)


def test_three_seeds_decide_by_the_rule_and_the_t_columns_are_more_cautious(tmp_path):
    module = _module()
    task = "MetaWorldPickPlace-v3"
    planned = {task: [(m, s) for m in ("bc", "otpr", "diffusion-ql") for s in (0, 1, 2)]}
    for seed, (otpr, bc, dql) in enumerate([(0.7, 0.4, 0.6), (0.6, 0.45, 0.68), (0.8, 0.3, 0.78)]):
        _run(tmp_path, task, "otpr", seed, otpr)
        _run(tmp_path, task, "bc", seed, bc)
        if seed < 2:
            _run(tmp_path, task, "diffusion-ql", seed, dql)
    runs = module.all_runs((str(tmp_path),))
    rows = {r["b"]: r for r in module.comparisons(runs, {task: [0, 1, 2]}, module.QUESTIONS)}
    assert rows["bc"]["decision"].verdict == "holds" and rows["bc"]["decision"].mean == pytest.approx(0.95 / 3)
    assert rows["bc"]["t"].verdict == "undecided"  # +0.30, +0.15, +0.50: the t interval at three seeds spans 0
    assert rows["diffusion-ql"]["decision"].verdict == "pending" and rows["diffusion-ql"]["seeds"] == [0, 1]
    _run(tmp_path, task, "diffusion-ql", 2, 0.78)
    rows = {r["b"]: r for r in module.comparisons(module.all_runs((str(tmp_path),)), {task: [0, 1, 2]}, module.QUESTIONS)}
    # differences +0.10, -0.08, +0.02: neither above 0 nor within the margin
    assert rows["diffusion-ql"]["decision"].verdict == "undecided"
    behind = [
        {**r, "final": r["final"] + 0.5} if r["method"] == "diffusion-ql" else r for r in module.all_runs((str(tmp_path),))
    ]
    (row,) = [r for r in module.comparisons(behind, {task: [0, 1, 2]}, module.QUESTIONS) if r["b"] == "diffusion-ql"]
    assert row["decision"].verdict == "reversed" and "*reversed* when it lies below 0" in PAGE
    text = module.page_text(module.all_runs((str(tmp_path),)), planned)
    assert text.startswith(f"Runs finished so far, per task: {task} 9 of 9.")
    assert "     - holds" in text and "     - undecided" in text


def test_a_seed_on_two_cpu_kinds_is_refused(tmp_path):
    module = _module()
    task = "RobosuitePickPlaceCan-v1"
    _run(tmp_path, task, "otpr", 0, 0.3)
    _run(tmp_path, task, "bc", 0, 0.24, cpu="AMD EPYC 7B13")
    with pytest.raises(ValueError, match="CPU"):
        module.comparisons(module.all_runs((str(tmp_path),)), {task: [0, 1, 2]}, module.QUESTIONS)


def test_readme_says_pending_while_a_verdict_is():
    module = _module()
    rows = module.verdicts(module.all_runs(), module.study_runs())
    readme = " ".join((ROOT / "README.md").read_text().split())
    all_pending = all(r["decision"].verdict == "pending" for r in rows)  # a comparison without runs has no row
    assert all_pending == ("every verdict there is pending until each task has its three seeds" in readme)
