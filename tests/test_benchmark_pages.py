"""docs/benchmarks.rst: the pytest-benchmark table is generated from its committed record."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pytest_benchmark_table_is_the_record():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = json.loads((ROOT / "docs" / "data" / "benchmarks" / "pytest-benchmark.json").read_text())
    assert (ROOT / "docs" / "benchmarks_pytest.inc").read_text() == module.table(data)
    # Every group pairs at least two benchmarks, except OTPR's training step (no reference in this suite).
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"], []).append(b["name"])
    assert all(len(v) >= 2 for k, v in groups.items() if "training step" not in k)


def test_benchmark_page_sentences():
    data = json.loads((ROOT / "docs" / "data" / "benchmarks" / "pytest-benchmark.json").read_text())
    median = {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}
    # "slower than POT on small, easy problems"
    for n in (100, 300, 500):
        assert median[f"test_l2_exact[neural_ot-{n}]"] > median[f"test_l2_exact[pot-{n}]"]
    # "on par with ot.sinkhorn": within 1.5x either way
    for n in (300, 1000):
        ratio = median[f"test_entropic_exact[neural_ot-{n}]"] / median[f"test_entropic_exact[pot-{n}]"]
        assert 1 / 1.5 < ratio < 1.5


def test_time_to_success_table_and_sentences_are_the_records():
    from otpr_sb3.benchmark.report import load_runs
    from otpr_sb3.benchmark.time_to_success import rst_time_to_success, time_to_success

    runs, curves = load_runs(str(ROOT / "results" / "fetch" / "runs"))
    keys = ["task", "method", "seed"]
    curves = curves.merge(runs.loc[runs["done"], keys], on=keys)
    table = time_to_success(runs, curves)
    assert (ROOT / "docs" / "results" / "time_to_success.rst").read_text() == rst_time_to_success(table)
    row = {(r.task, r.method): r for r in table.itertuples()}
    otpr, dql = row[("FetchPickAndPlace", "otpr")], row[("FetchPickAndPlace", "dql")]
    assert otpr.steps_to_threshold == dql.steps_to_threshold == 4000
    assert dql.wall_time_to_threshold < otpr.wall_time_to_threshold
    assert (round(dql.wall_time_to_threshold / 60, 1), round(otpr.wall_time_to_threshold / 60, 1)) == (3.4, 3.8)
    assert row[("FetchPickAndPlace", "otpr-q")].steps_to_threshold == 14000
    assert row[("FetchPickAndPlace", "otpr-adv")].steps_to_threshold == 8000
    push = table.loc[table["task"] == "FetchPush"]
    assert push["steps_to_threshold"].isna().all() and (push.loc[push["method"] != "bc", "steps"] == 30000).all()
