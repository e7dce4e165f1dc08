"""`otpr report`: the summary table, curves and rliable statistics from a fixture of run directories."""

import json

import numpy as np
import pytest
from scipy import stats

from otpr_sb3.benchmark.cli import build_parser, main, parse_overrides
from otpr_sb3.benchmark.evaluation import write_evaluations
from otpr_sb3.benchmark.report import DIAGNOSTICS, area_under_curve, build_report, load_runs

pytest.importorskip("rliable")


def write_run(root, task, method, seed, curve, done=True, final_episodes=50):
    run_dir = root / task / method / f"s{seed}"
    run_dir.mkdir(parents=True)
    rows = [
        {"timesteps": t, "success": s, "episodes": 20, "final": 0, "wall_time": 10.0 * (i + 1)}
        for i, (t, s) in enumerate(curve)
    ]
    rows[0]["episodes"] = final_episodes
    if done:
        rows[-1].update(final=1, episodes=final_episodes)
        summary = {"done": True, "env_steps_per_s": 12.0}
        if method == "otpr":
            summary["diagnostics"] = {"marginal_error": 0.05 + 0.01 * seed, "dual_gap": 0.002}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    write_evaluations(str(run_dir / "evaluations.csv"), rows)


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    finals = {"otpr": [0.9, 0.8, 1.0, 0.7, 0.95], "sac-demos": [0.1, 0.2, 0.0, 0.3, 0.1]}
    for method, values in finals.items():
        for seed, final in enumerate(values):
            write_run(root, "FetchPush", method, seed, [(0, 0.5), (1000, 0.6), (2000, final)])
    write_run(root, "FetchPush", "otpr-u", 0, [(0, 0.5), (1000, 0.5), (2000, 0.6)])
    write_run(root, "FetchPush", "otpr-u", 1, [(0, 0.5), (1000, 0.7)], done=False)  # still running
    write_run(root, "FetchPush", "bc", 0, [(0, 0.5)])
    return root, finals


def test_area_under_curve_is_the_trapezoid_mean():
    rows = [{"timesteps": 0, "success": 0.0}, {"timesteps": 1000, "success": 1.0}, {"timesteps": 3000, "success": 1.0}]
    assert area_under_curve(rows) == pytest.approx((0.5 * 1000 + 2000) / 3000)
    assert area_under_curve(rows[:1]) == 0.0


def test_report_table_matches_hand_computed_statistics(runs_dir, tmp_path):
    root, finals = runs_dir
    written = build_report(str(root), str(tmp_path / "report"), reps=500)
    names = {p.split("/")[-1] for p in written}
    assert {"runs.csv", "curves.csv", "summary.csv", "summary.rst", "improvement.csv", "curves.png", "ablations.png"} <= names
    import pandas as pd

    table = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("method")
    otpr = np.array(finals["otpr"])
    assert table.loc["otpr", "seeds"] == 5
    assert table.loc["otpr", "final_success"] == pytest.approx(otpr.mean())
    assert table.loc["otpr", "final_success_se"] == pytest.approx(otpr.std(ddof=1) / np.sqrt(5))
    auc = [(0.5 * (0.5 + 0.6) + 0.5 * (0.6 + f)) / 2 for f in otpr]
    assert table.loc["otpr", "auc"] == pytest.approx(np.mean(auc))
    # rliable's IQM is the 25%-trimmed mean; the bootstrap interval brackets it.
    assert table.loc["otpr", "iqm_final"] == pytest.approx(stats.trim_mean(otpr, 0.25))
    assert table.loc["otpr", "iqm_low"] <= table.loc["otpr", "iqm_final"] <= table.loc["otpr", "iqm_high"]
    # Fewer than 5 seeds: mean only, and the unfinished run is counted apart.
    assert np.isnan(table.loc["otpr-u", "iqm_final"])
    assert (table.loc["otpr-u", "seeds"], table.loc["otpr-u", "unfinished"]) == (1, 1)
    assert table.loc["otpr-u", "final_success"] == pytest.approx(0.6)
    assert table.loc["bc", "final_success"] == pytest.approx(0.5) and table.loc["bc", "auc"] == pytest.approx(0.5)
    improvement = pd.read_csv(tmp_path / "report" / "improvement.csv")
    assert list(improvement["method"]) == ["sac-demos"]  # the only other method with 5 seeds
    assert improvement["probability_of_improvement"].iloc[0] == pytest.approx(1.0)  # every OTPR seed beats every SAC one
    assert "1.00 [1.00, 1.00]" in (tmp_path / "report" / "improvement.rst").read_text()
    assert "(+1 running)" in (tmp_path / "report" / "summary.rst").read_text()
    diffs = pd.read_csv(tmp_path / "report" / "differences.csv").set_index("method")
    paired = otpr - np.array(finals["sac-demos"])
    assert diffs.loc["sac-demos", "final_success_diff"] == pytest.approx(paired.mean())
    assert diffs.loc["sac-demos", "final_success_diff_se"] == pytest.approx(paired.std(ddof=1) / np.sqrt(5))
    assert diffs.loc["sac-demos", "wins"] == 5
    # otpr-u: only seed 0 finished, so one pair (0.9 - 0.6) and no standard error.
    assert diffs.loc["otpr-u", "seeds"] == 1 and diffs.loc["otpr-u", "final_success_diff"] == pytest.approx(0.3)
    assert np.isnan(diffs.loc["otpr-u", "final_success_diff_se"])
    assert "+0.30" in (tmp_path / "report" / "differences.rst").read_text()
    # Diagnostics: the median over seeds (0.05 ... 0.09) for OTPR, none for the methods without them.
    assert table.loc["otpr", "marginal_error"] == pytest.approx(0.07)
    assert np.isnan(table.loc["sac-demos", "marginal_error"])
    diagnostics = (tmp_path / "report" / "diagnostics.rst").read_text()
    assert "0.070" in diagnostics and "sac-demos" not in diagnostics
    assert table.loc["otpr", "wall_time_min"] == pytest.approx(30.0 / 60.0)  # the last row's wall_time, 30 s
    # Mean curves hold finished runs only: otpr-u has its one finished seed at every step.
    curves = pd.read_csv(tmp_path / "report" / "curves.csv").set_index(["method", "timesteps"])
    assert curves.loc[("otpr-u", 1000), "seeds"] == 1 and curves.loc[("otpr-u", 1000), "mean"] == pytest.approx(0.5)


def test_report_command_and_empty_runs_dir(runs_dir, tmp_path, capsys):
    root, _ = runs_dir
    main(["report", "--runs-dir", str(root), "--out", str(tmp_path / "r"), "--bootstrap-reps", "200"])
    assert "summary.csv" in capsys.readouterr().out
    runs, curves = load_runs(str(root))
    assert len(runs) == 13 and set(curves["method"]) == {"otpr", "sac-demos", "otpr-u", "bc"}
    with pytest.raises(SystemExit) as err:
        main(["report", "--runs-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")])
    assert err.value.code == 2
    assert "no runs" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["record", "train", "sweep", "report"])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args([verb, "--help"])
    assert err.value.code == 0
    assert f"otpr {verb}" in capsys.readouterr().out


def test_overrides_parse_literals_and_policy_keys():
    kwargs, policy = parse_overrides(
        ["dual_start=500", "reg=1e-3", "use_mask=False", "policy.critic_hidden=(64, 64)", "policy.guidance=q"]
    )
    assert kwargs == {"dual_start": 500, "reg": 1e-3, "use_mask": False}
    assert policy == {"critic_hidden": (64, 64), "guidance": "q"}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["dual_start"])


def test_bootstrap_intervals_do_not_depend_on_the_global_numpy_rng():
    # rliable 1.2 ignores its random_state and draws from np.random; the report must not inherit that.
    import pandas as pd

    from otpr_sb3.benchmark.report import probability_of_improvement, summary_table

    finals = {"otpr": [0.9, 0.9, 0.94, 0.92, 0.86], "dql": [0.86, 0.62, 0.82, 0.86, 0.84]}
    runs = pd.DataFrame(
        [
            dict(
                task="T",
                method=m,
                seed=i,
                done=True,
                start_success=0.3,
                final_success=f,
                auc=f,
                wall_time=1.0,
                env_steps_per_s=1.0,
                **{name: np.nan for name in DIAGNOSTICS},
            )
            for m, fs in finals.items()
            for i, f in enumerate(fs)
        ]
    )
    results = []
    for global_seed in range(4):
        np.random.seed(global_seed)  # noqa: NPY002
        improvement = probability_of_improvement(runs, reps=50)
        table = summary_table(runs, reps=50).set_index("method")
        after = np.random.get_state()[1].copy()  # noqa: NPY002
        np.random.seed(global_seed)  # noqa: NPY002
        assert np.array_equal(after, np.random.get_state()[1])  # the caller's RNG is left where it was  # noqa: NPY002
        results.append((improvement[["low", "high"]].to_numpy().tolist(), table[["iqm_low", "iqm_high"]].to_numpy().tolist()))
    assert all(r == results[0] for r in results)


def test_report_names_commits_and_cpus_only_where_runs_differ(runs_dir, tmp_path):
    root, _ = runs_dir
    out = tmp_path / "same"
    build_report(str(root), str(out), reps=50)
    assert "commits" not in (out / "summary.rst").read_text()  # every run "unknown": nothing to tell apart
    for seed, (commit, cpu) in enumerate([("a" * 40, "Intel Xeon"), ("b" * 40, "AMD EPYC")]):
        summary_path = root / "FetchPush" / "otpr" / f"s{seed}" / "summary.json"
        summary = json.loads(summary_path.read_text())
        summary["provenance"] = {"commit": commit, "dirty": seed == 1, "cpu": cpu}
        summary_path.write_text(json.dumps(summary))
    spec = {"provenance": {"reconstructed": True, "recorded_in_commit": "c" * 40, "cpu": None}}
    (root / "FetchPush" / "bc" / "s0" / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "mixed"
    build_report(str(root), str(out), reps=50)
    runs, _ = load_runs(str(root))
    otpr = runs[runs["method"] == "otpr"].set_index("seed")
    assert [otpr.loc[s, "commit"] for s in (0, 1, 2)] == ["aaaaaaa", "bbbbbbb+dirty", "unknown"]
    assert runs[runs["method"] == "bc"]["commit"].tolist() == ["<=ccccccc"]
    text = (out / "summary.rst").read_text()
    assert "     - commits" in text and "     - aaaaaaa, bbbbbbb+dirty, unknown" in text
    assert "     - AMD EPYC, Intel Xeon, unknown" in text


def test_list_table_never_writes_a_cell_that_rst_reads_as_a_bullet():
    from otpr_sb3.benchmark.report_rst import list_table

    text = list_table(["a", "b", "c"], [["1", "-", ""]])
    cells = [line.split("- ", 1)[1] if "- " in line else line for line in text.splitlines()[3:]]
    assert cells[3:] == ["1", "n/a", "n/a"]


def test_figure_panels_compare_methods_on_their_shared_seeds():
    import pandas as pd

    from otpr_sb3.benchmark.report import _seed_range, panel_curves

    rows = [
        ("T", m, s, t, 0.5)
        for m, seeds in (("otpr", range(5)), ("dql", range(3)), ("bc", (0, 1, 2)))
        for s in seeds
        for t in (0, 10)
    ]
    curves = pd.DataFrame(rows, columns=["task", "method", "seed", "timesteps", "success"])
    panel, shared = panel_curves(curves, "T", None)
    assert shared == [0, 1, 2] and set(panel["seed"]) == {0, 1, 2} and set(panel["method"]) == {"otpr", "dql", "bc"}
    panel, shared = panel_curves(curves, "T", ("otpr",))
    assert shared == [0, 1, 2, 3, 4]
    assert _seed_range([0, 1, 2]) == "0-2" and _seed_range([0, 2, 5]) == "0, 2, 5"


def test_stochastic_final_evaluation_is_a_column_where_runs_recorded_it(runs_dir, tmp_path):
    from otpr_sb3.benchmark.report import summary_table
    from otpr_sb3.benchmark.report_rst import rst_table

    root, _ = runs_dir
    runs, _ = load_runs(str(root))
    assert runs["final_stochastic"].isna().all()  # older records: no column in the table
    assert "final, stochastic" not in rst_table(summary_table(runs, reps=100))
    for seed, value in enumerate((0.9, 1.0, 0.95, 0.85, 1.0)):
        path = root / "FetchPush" / "otpr" / f"s{seed}" / "summary.json"
        summary = json.loads(path.read_text())
        path.write_text(json.dumps({**summary, "final_success_stochastic": value}))
    bc = root / "FetchPush" / "bc" / "s0" / "summary.json"
    bc.write_text(json.dumps({**json.loads(bc.read_text()), "final_success_stochastic": None}))
    runs, _ = load_runs(str(root))
    table = summary_table(runs, reps=100).set_index("method")
    assert table.loc["otpr", "final_stochastic"] == pytest.approx(0.94)
    assert table.loc["otpr", "final_stochastic_se"] == pytest.approx(np.std([0.9, 1.0, 0.95, 0.85, 1.0], ddof=1) / np.sqrt(5))
    assert np.isnan(table.loc["bc", "final_stochastic"])
    text = rst_table(table.reset_index())
    assert "final, stochastic" in text and "0.94 ± 0.03" in text


def test_success_rate_passes_deterministic_to_predict():
    from otpr_sb3.benchmark.evaluation import success_rate
    from otpr_sb3.benchmark.tasks import get_task

    class Env:  # one-step episodes: success when the action is the deterministic one
        def reset(self, seed=None):
            return np.zeros(2), {}

        def step(self, action):
            return np.zeros(2), 0.0, True, False, {"is_success": float(action[0] == 1.0)}

    class Model:
        def __init__(self):
            self.flags = []

        def predict(self, obs, deterministic=True):
            self.flags.append(deterministic)
            return np.array([1.0 if deterministic else 0.0]), None

    task, model = get_task("FetchPush-v4"), Model()
    assert success_rate(model, task, 3, env=Env()) == 1.0 and model.flags == [True] * 3
    assert success_rate(model, task, 2, env=Env(), deterministic=False) == 0.0 and model.flags[3:] == [False] * 2


def test_cpu_time_to_success_is_shown_where_recorded(tmp_path):
    from otpr_sb3.benchmark.evaluation import read_evaluations
    from otpr_sb3.benchmark.time_to_success import rst_time_to_success, time_to_success

    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "FetchPush", "otpr", seed, [(0, 0.5), (1000, 0.85), (2000, 0.9)])
        write_run(root, "FetchPush", "dql", seed, [(0, 0.5), (1000, 0.7), (2000, 0.9)])
        path = str(root / "FetchPush" / "otpr" / f"s{seed}" / "evaluations.csv")  # as the harness writes them now
        write_evaluations(path, [{**r, "cpu_time": 4.0 * (i + 1) + seed} for i, r in enumerate(read_evaluations(path))])
    table = time_to_success(*load_runs(str(root))).set_index("method")
    assert table.loc["otpr", "cpu_time_to_threshold"] == pytest.approx(8.5)  # 8 and 9 s at 1,000 steps
    assert table.loc["otpr", "wall_time_to_threshold"] == pytest.approx(20.0) and table.loc["otpr", "cpu_recorded"]
    assert not table.loc["dql", "cpu_recorded"] and np.isnan(table.loc["dql", "cpu_time_to_threshold"])
    text = rst_time_to_success(table.reset_index())
    assert "CPU time to 0.8" in text and "     - 0.1 min" in text and "     - not recorded" in text
    older = rst_time_to_success(table.reset_index().query("method == 'dql'"))
    assert "CPU time" not in older and "not recorded" not in older  # a table of older records keeps its columns


def test_evaluation_files_without_cpu_time_stay_readable_and_keep_their_header(tmp_path):
    from otpr_sb3.benchmark.evaluation import append_evaluation, read_evaluations

    path = tmp_path / "evaluations.csv"
    path.write_text("timesteps,success,episodes,final,wall_time\n0,0.5,10,0,1.0\n")  # recorded before cpu_time
    row = {"timesteps": 100, "success": 0.6, "episodes": 10, "final": 1, "wall_time": 2.0, "cpu_time": 1.5}
    append_evaluation(str(path), row)
    lines = ["timesteps,success,episodes,final,wall_time", "0,0.5,10,0,1.0", "100,0.6,10,1,2.0"]
    assert path.read_text().splitlines() == lines
    rows = read_evaluations(str(path))
    write_evaluations(str(path), [*rows, {**rows[-1], "timesteps": 200, "cpu_time": 3.0}])  # a rewrite has every field
    assert path.read_text().splitlines()[1] == "0,0.5,10,0,1.0,"  # no CPU time: an empty cell
    rows = read_evaluations(str(path))
    assert np.isnan(rows[0]["cpu_time"]) and rows[-1]["cpu_time"] == 3.0
    empty = tmp_path / "empty.csv"
    empty.write_text("")  # created, then the process died before writing
    append_evaluation(str(empty), row)
    assert read_evaluations(str(empty)) == [{k: float(v) for k, v in row.items()}]


def test_run_clock_counts_earlier_attempts_and_a_missing_cpu_time_stays_missing():
    from otpr_sb3.benchmark.runner import _RunClock

    clock = _RunClock()
    clock.resume({"wall_time": 100.0, "cpu_time": 40.0})
    elapsed = clock.elapsed()
    assert 100.0 <= elapsed["wall_time"] < 110.0 and 40.0 <= elapsed["cpu_time"] < 50.0
    older = _RunClock()
    older.resume({"wall_time": 100.0, "cpu_time": float("nan")})  # an attempt at a commit that did not record it
    assert np.isnan(older.elapsed()["cpu_time"])
    older = _RunClock()
    older.resume({"wall_time": 100.0})
    assert np.isnan(older.elapsed()["cpu_time"])
