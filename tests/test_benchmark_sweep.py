"""`otpr sweep`: a two-trial grid through Ray Tune on this machine, stopped mid-way and resumed."""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from otpr_sb3.benchmark.evaluation import read_evaluations
from otpr_sb3.benchmark.run_spec import RunSpec, default_dataset_id
from otpr_sb3.benchmark.sweep import SweepConfig

pytest.importorskip("ray.tune")

SWEEP = """
name = "two-trials"
runs_dir = "{root}/runs"
data_path = "{root}/minari"
storage = "{root}/ray"
max_concurrent = 1

[defaults]
steps = 400
eval_freq = 100
eval_episodes = 1
final_eval_episodes = 1
pretrain_steps = 50
kwargs = {{ learning_starts = 20, batch_size = 32, dual_start = 5, actor_kwargs = {{ batch_size = 32 }}, \
    dual_kwargs = {{ batch_size = 16 }} }}
policy_kwargs = {{ actor_hidden_dim = 32, actor_n_blocks = 1, critic_hidden = [32, 32] }}

[[runs]]
env = "PointMaze_UMaze-v3"
methods = ["otpr", "idql"]
seeds = [0]
"""


ADDED_SEED = """
[[runs]]
env = "PointMaze_UMaze-v3"
methods = ["otpr"]
seeds = [1]
"""


def sweep(path, log):
    return subprocess.Popen(
        [sys.executable, "-m", "otpr_sb3.benchmark.cli", "sweep", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_sweep_resumes_after_interruption_without_redoing_finished_trials(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP.format(root=tmp_path))
    first_run, second_run = (Path(s.run_dir) for s in SweepConfig.from_toml(str(config)).specs())
    with open(tmp_path / "first.log", "w") as log:
        proc = sweep(config, log)
        deadline = time.time() + 240
        # Stop the sweep once the first trial has finished and the second has checkpointed.
        while time.time() < deadline and proc.poll() is None:
            if (first_run / "summary.json").exists() and (second_run / "checkpoint" / "model.zip").exists():
                break
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        # Stopped with runs left: status 130, so that a chain of sweeps (scripts/studies.sh) stops too
        assert proc.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-3000:]
    assert "2 runs: 1 finished, 1 not finished" in (tmp_path / "first.log").read_text()
    finished = (first_run / "evaluations.csv").read_bytes()
    partial = read_evaluations(str(second_run / "evaluations.csv"))
    assert not (second_run / "summary.json").exists() and 2 <= len(partial) < 5
    with open(tmp_path / "second.log", "w") as log:
        assert sweep(config, log).wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    second_log = (tmp_path / "second.log").read_text()
    assert "PointMaze_UMaze-otpr-s0 started" not in second_log  # Tune restored it as finished
    assert "PointMaze_UMaze-idql-s0 started" in second_log
    assert (first_run / "evaluations.csv").read_bytes() == finished
    resumed = read_evaluations(str(second_run / "evaluations.csv"))
    assert resumed[: len(partial)] == partial  # the work done before the interruption is kept
    assert [r["timesteps"] for r in resumed] == [0, 100, 200, 300, 400]
    assert (second_run / "summary.json").exists()
    # A seed added to the finished sweep: exactly one new run, and nothing else is run again.
    config.write_text(SWEEP.format(root=tmp_path) + ADDED_SEED)
    before = sorted(p for p in (tmp_path / "runs").rglob("summary.json"))
    with open(tmp_path / "third.log", "w") as log:
        assert sweep(config, log).wait(timeout=300) == 0, (tmp_path / "third.log").read_text()[-3000:]
    after = sorted(p for p in (tmp_path / "runs").rglob("summary.json"))
    assert len(after) == len(before) + 1 and set(before) < set(after)
    third_log = (tmp_path / "third.log").read_text()
    assert "PointMaze_UMaze-otpr-s1 started" in third_log and "-s0 started" not in third_log
    assert "3 runs: 3 finished, 0 not finished" in third_log


def test_collected_runs_are_not_run_again_and_collect_refuses_to_replace(tmp_path):
    from otpr_sb3.benchmark.collect import collect
    from otpr_sb3.benchmark.sweep import pending

    text = SWEEP.format(root=tmp_path).replace("storage =", f'collect_dir = "{tmp_path}/results"\nstorage =')
    config = SweepConfig.from_dict(tomllib.loads(text))
    specs = config.specs()
    assert pending(config) == specs
    done = Path(specs[0].run_dir)  # a finished run, as the runner leaves it (light files and heavy ones)
    (done / "checkpoint").mkdir(parents=True)
    for name in ("evaluations.csv", "summary.json", "checkpoint/model.zip"):
        (done / name).write_text(name)
    stored = json.dumps({**specs[0].identity(), "dataset": default_dataset_id(specs[0].env_id), "provenance": {}})
    (done / "spec.json").write_text(stored)
    copied = collect(str(tmp_path / "runs"), str(tmp_path / "results"))
    assert copied == [os.path.relpath(done, tmp_path / "runs")]
    target = tmp_path / "results" / copied[0]
    assert sorted(p.name for p in target.iterdir()) == ["evaluations.csv", "spec.json", "summary.json"]
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: the run exists only in the collected folder
    assert pending(config) == specs[1:]
    (done).mkdir(parents=True)
    for name in ("spec.json", "evaluations.csv", "summary.json"):
        (done / name).write_text("another record")
    with pytest.raises(ValueError, match="different record"):
        collect(str(tmp_path / "runs"), str(tmp_path / "results"))
    assert (target / "summary.json").read_text() == "summary.json"


def test_a_finished_directory_of_another_run_is_an_error_not_a_finished_run(tmp_path):
    """Runs that differ only in their demonstrations get their own directories; a directory that holds another run
    than the sweep asks for (here: other steps) makes ``pending`` raise instead of counting that run as done."""
    from otpr_sb3.benchmark.sweep import pending

    config = SweepConfig.from_dict(tomllib.loads(SWEEP.format(root=tmp_path)))
    spec = config.specs()[0]
    mixed = dataclasses.replace(spec, dataset="otpr/fetchpickandplace-mix-50ep-noise10-50ep-noise100-s0-v0")
    explicit = dataclasses.replace(spec, dataset=default_dataset_id(spec.env_id))
    assert mixed.run_dir != spec.run_dir and explicit.run_dir == spec.run_dir
    done = Path(spec.run_dir)
    done.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    other = {**dataclasses.replace(spec, steps=spec.steps + 1).identity(), "dataset": default_dataset_id(spec.env_id)}
    (done / "spec.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"holds another run .*steps: \d+ -> \d+"):
        pending(config)
    (done / "spec.json").write_text(json.dumps({**other, "steps": spec.steps}))
    assert spec not in pending(config)
    (done / "spec.json").unlink()
    with pytest.raises(ValueError, match="has a summary.json but no spec.json"):
        pending(config)


def test_the_committed_claims_runs_keep_their_directories():
    """The directory key of a run on the task's default demonstrations did not change when datasets entered it."""
    spec = RunSpec(
        "FetchPickAndPlace-v4",
        "otpr",
        steps=10000,
        eval_freq=1000,
        final_eval_episodes=100,
        kwargs={"dual_kwargs": {"reference_actions": 256}, "reg": 0.05, "relation_weight": 0.1},
        policy_kwargs={"guidance_kwargs": {"relation_scale": "spread"}},
    )
    root = Path(__file__).resolve().parents[1] / "results" / "claims" / "report" / "runs"
    stored = json.loads((root / "FetchPickAndPlace" / "otpr-ae6208b4" / "s0" / "spec.json").read_text())
    assert os.path.basename(os.path.dirname(spec.run_dir)) == "otpr-ae6208b4" and spec.differences(stored) == []


def test_an_address_where_nothing_answers_fails_fast():
    from otpr_sb3.benchmark.sweep import check_address

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ValueError, match="no Ray cluster answers"):  # at once, not after Ray's GCS timeouts
        check_address(f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(ValueError, match="host:port"):
        check_address("nonsense")


def test_sweep_file_expands_to_one_run_per_method_and_seed(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP.format(root=tmp_path).replace("seeds = [0]", "seeds = [0, 1, 2]"))
    sweep_config = SweepConfig.from_toml(str(config))
    specs = sweep_config.specs()
    assert [(s.method, s.seed) for s in specs] == [(m, k) for k in (0, 1, 2) for m in ("otpr", "idql")]
    assert all(s.steps == 400 and s.threads == 1 and os.path.isabs(s.runs_dir) for s in specs)
    assert specs[0].policy_kwargs["critic_hidden"] == [32, 32]
    # Seeds outermost across groups as well, so a sweep cut short leaves every arm paired on its first seeds.
    two = SweepConfig.from_dict(
        {
            "name": "x",
            "defaults": {"env": "PointMaze_UMaze-v3", "seeds": [0, 1]},
            "runs": [{"methods": ["otpr"]}, {"methods": ["idql"], "kwargs": {"n_candidates": 4}}],
        }
    )
    assert [(r["method"], r["seed"]) for r in two.runs] == [("otpr", 0), ("idql", 0), ("otpr", 1), ("idql", 1)]
    with pytest.raises(ValueError, match="unknown run keys"):
        SweepConfig.from_dict({"name": "x", "runs": [{"env": "PointMaze_UMaze-v3", "methods": ["otpr"], "stpes": 3}]})
    with pytest.raises(ValueError, match="method"):
        SweepConfig.from_dict({"name": "x", "runs": [{"env": "PointMaze_UMaze-v3", "methods": ["ppo"]}]})
    with pytest.raises(ValueError, match="no \\[\\[runs\\]\\]"):
        SweepConfig.from_dict({"name": "x"})
    with pytest.raises(ValueError, match="unknown sweep keys"):
        SweepConfig.from_dict({"name": "x", "threads": 2, "runs": [{"env": "PointMaze_UMaze-v3", "methods": ["otpr"]}]})


def test_the_baselines_tuning_sweep_gives_every_method_two_configurations_on_the_tuning_seeds():
    from collections import Counter

    path = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "baselines_tuning.toml"
    specs = SweepConfig.from_toml(str(path)).specs()
    assert {s.seed for s in specs} == {100, 101}
    configs = Counter(s.method for s in specs if s.seed == 100)
    methods = {"otpr", "idql-n", "dql", "diffusion-ql", "rlpd-her", "ibrl", "dsrl"}
    assert set(configs.values()) == {2} and methods == set(configs)
    assert len({s.run_dir for s in specs}) == len(specs) == 28  # every configuration is a run of its own


def test_the_baselines_report_sweep_keeps_each_methods_better_configuration(tmp_path):
    import json

    from otpr_helpers import load_script

    from otpr_sb3.benchmark.evaluation import write_evaluations

    module = load_script("examples/benchmarks/baselines_report_sweep.py")

    def run(name, method, seed, curve, kwargs=None):
        run_dir = tmp_path / "FetchPickAndPlace" / name / f"s{seed}"
        run_dir.mkdir(parents=True)
        spec = {"method": method, "seed": seed, "kwargs": kwargs or {}, "policy_kwargs": {}}
        (run_dir / "spec.json").write_text(json.dumps(spec))
        (run_dir / "summary.json").write_text(json.dumps({"final_success": curve[-1]}))
        rows = [
            {"timesteps": 1000 * i, "success": s, "episodes": 20, "final": 0, "wall_time": 1.0} for i, s in enumerate(curve)
        ]
        write_evaluations(str(run_dir / "evaluations.csv"), rows)

    for seed in (100, 101):
        run("otpr", "otpr", seed, [0.3] + [0.8] * 6)
        run("otpr-7daf0e95", "otpr", seed, [0.3] + [0.9] * 6, kwargs={"reg": 0.1})
        run("dql", "dql", seed, [0.3] + [0.5] * 6)
    run("dql-1234abcd", "dql", 100, [0.3] + [1.0] * 6)  # better, but seed 101 is missing: not a candidate yet
    scores = module.tuning_scores(str(tmp_path))
    assert scores["otpr-7daf0e95"]["last_five"] == pytest.approx(0.9) and scores["dql-1234abcd"]["seeds"] == [100]
    chosen = module.kept(scores)
    assert chosen == {"otpr": "otpr-7daf0e95", "dql": "dql"}
    config = SweepConfig.from_dict(tomllib.loads(module.sweep_text(scores, chosen)))
    runs = {(r["env_id"], r["method"], r["seed"]): r for r in config.runs}
    assert runs[("FetchPickAndPlace-v4", "otpr", 4)]["kwargs"] == {"reg": 0.1}
    assert runs[("FetchPickAndPlace-v4", "otpr", 4)]["steps"] == 15000 and ("FetchPush-v4", "dql", 2) in runs
    assert runs[("FetchPush-v4", "otpr-her", 2)]["kwargs"] == {"reg": 0.1}  # with HER, at OTPR's kept configuration
    run("rlpd-her", "rlpd-her", 100, [0.0] * 7)
    run("rlpd-her", "rlpd-her", 101, [0.0] * 7)
    scores = module.tuning_scores(str(tmp_path))
    order = SweepConfig.from_dict(tomllib.loads(module.sweep_text(scores, module.kept(scores)))).runs
    for seed in (0, 4):  # seeds outermost (the sweep's order); within a seed, the expensive method last
        methods = [r["method"] for r in order if r["seed"] == seed]
        assert methods.index("rlpd-her") > max(i for i, m in enumerate(methods) if m != "rlpd-her")
    assert ("FetchPickAndPlace-v4", "otpr", 5) not in runs and ("FetchPush-v4", "bc", 0) in runs
    assert {r["final_eval_episodes"] for r in config.runs} == {100}
    rows = [line for line in module.table_rst(scores).splitlines() if line.strip().startswith(("* -", "- "))]
    assert "     - reg = 0.1" in rows and "     - 0.90 / 0.90" in rows  # the override, and last five / final
    cells = rows[rows.index("   * - dql") :]
    assert cells[1:6] == [
        "     - default",
        "     - 0.50 / 0.50",
        "     - 0.50 / 0.50",
        "     - 0.50",
        "     - 0.48",
    ]  # AUC (0.4 + 5 x 0.5) / 6
    assert cells[7:12] == ["     - default", "     - 1.00 / 1.00", "     - not yet", "     - not yet", "     - not yet"]


def test_finished_runs_are_those_with_a_summary_in_path_order(tmp_path):
    from otpr_sb3.benchmark.collect import finished_runs

    for method, seed, done in (("otpr", 1, True), ("bc", 0, True), ("otpr", 0, False)):
        run_dir = tmp_path / "Task" / method / f"s{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text(json.dumps({"method": method, "seed": seed}))
        (run_dir / "evaluations.csv").write_text("timesteps,success,episodes,final,wall_time\n0,0.5,10,1,1.0\n")
        if done:
            (run_dir / "summary.json").write_text(json.dumps({"final_success": 0.5}))
    runs = list(finished_runs(str(tmp_path)))
    assert [(spec["method"], spec["seed"]) for _, spec, _, _ in runs] == [("bc", 0), ("otpr", 1)]
    assert runs[0][0] == str(tmp_path / "Task" / "bc" / "s0")
    assert runs[0][2] == {"final_success": 0.5} and runs[0][3][0]["success"] == 0.5


def test_sweep_status_reads_where_each_run_stands(tmp_path, capsys):
    from otpr_sb3.benchmark.cli import main
    from otpr_sb3.benchmark.evaluation import write_evaluations
    from otpr_sb3.benchmark.sweep import sweep_status

    text = f"""
name = "status"
runs_dir = "{tmp_path / "runs"}"
collect_dir = "{tmp_path / "results"}"
[[runs]]
env = "FetchPush-v4"
methods = ["bc", "otpr", "dql"]
seeds = [0]
steps = 3000
"""
    (tmp_path / "sweep.toml").write_text(text)
    config = SweepConfig.from_toml(str(tmp_path / "sweep.toml"))
    row = {"success": 0.5, "episodes": 20, "final": 0, "wall_time": 1.0}
    done = tmp_path / "results" / "FetchPush" / "bc" / "s0"  # finished and collected
    done.mkdir(parents=True)
    write_evaluations(str(done / "evaluations.csv"), [{**row, "timesteps": 0, "final": 1, "success": 0.4}])
    (done / "summary.json").write_text("{}")
    started = tmp_path / "runs" / "FetchPush" / "otpr" / "s0"  # two evaluations in, no summary
    started.mkdir(parents=True)
    write_evaluations(str(started / "evaluations.csv"), [{**row, "timesteps": 0}, {**row, "timesteps": 1000, "success": 0.7}])
    status = {r["method"]: r for r in sweep_status(config)}
    assert status["bc"]["state"] == "finished" and status["bc"]["success"] == 0.4
    assert (status["otpr"]["state"], status["otpr"]["steps"], status["otpr"]["of"]) == ("started", 1000, 3000)
    assert status["otpr"]["success"] == 0.7
    assert status["dql"]["state"] == "pending" and status["dql"]["steps"] == 0 and np.isnan(status["dql"]["success"])
    main(["sweep", str(tmp_path / "sweep.toml"), "--status"])  # prints and returns: no Ray, no run
    out = capsys.readouterr().out
    assert "3 runs: 1 finished, 1 started, 1 pending" in out and "1,000/3,000" in out and "dql" not in out
    assert out.splitlines()[-1] == "3 runs: 1 finished, 1 started, 1 pending"  # the line scripts read
    assert "left: 2 run(s), none with a finished run" in out
    with pytest.raises(SystemExit) as left:  # for scripts: runs left
        main(["sweep", str(tmp_path / "sweep.toml"), "--status", "--exit-code"])
    assert left.value.code == 3
    (tmp_path / "done.toml").write_text(text.replace('"bc", "otpr", "dql"', '"bc"'))
    main(["sweep", str(tmp_path / "done.toml"), "--status", "--exit-code"])  # every run finished: returns (0)
    with pytest.raises(SystemExit, match="--exit-code needs --status"):
        main(["sweep", str(tmp_path / "sweep.toml"), "--exit-code"])
    assert not (tmp_path / "runs" / "FetchPush" / "dql").exists()


def test_time_left_is_the_finished_runs_mean_wall_clock_times_the_steps_left(capsys):
    from otpr_sb3.benchmark.cli import _time_left_line
    from otpr_sb3.benchmark.sweep import time_left

    def status(method, state, steps=0, wall_time=0.0, of=3000):
        return {"task": "FetchPush", "method": method, "state": state, "steps": steps, "of": of, "wall_time": wall_time}

    runs = [
        status("otpr", "finished", 3000, 3600.0),
        status("otpr", "finished", 3000, 7200.0),  # mean 1.5 h
        status("otpr", "started", 1000, 600.0),  # two thirds left: 1.0 h
        status("otpr", "pending"),  # 1.5 h
        status("dql", "pending"),  # none finished: not estimated
        status("bc", "finished", 0, 60.0, of=3000),
        status("bc", "pending", of=3000),  # BC never steps: its whole evaluation, 1 min
    ]
    hours, unestimated = time_left(runs)
    assert hours == pytest.approx(2.5 + 1 / 60) and unestimated == 1
    line = _time_left_line(runs, 2)
    assert line.startswith("left: about 2.5 run-hours") and "(1.3 h at 2 at a time)" in line
    assert "1 run(s) with none finished of their task and method not counted" in line
    assert _time_left_line([status("dql", "pending")], 2).startswith("left: 1 run(s), none with a finished run")
    assert time_left([status("otpr", "finished", 3000, 10.0)]) == (0.0, 0)


@pytest.mark.parametrize(("errors", "code"), [([], 130), ([RuntimeError("trial failed")], 1)])
def test_sweep_exit_status_says_why_runs_are_left(tmp_path, monkeypatch, capsys, errors, code):
    """Runs left after Tune returns: 1 if a trial failed, 130 if they were stopped; 0 (no exit) when all finished."""
    import otpr_sb3.benchmark.sweep as sweep_module
    from otpr_sb3.benchmark.cli import main

    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP.format(root=tmp_path))
    result = dataclasses.make_dataclass("Grid", ["errors"])(errors)
    monkeypatch.setattr(sweep_module, "run_sweep", lambda config, address=None: result)
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", str(config)])
    assert stopped.value.code == code and "2 runs: 0 finished, 2 not finished" in capsys.readouterr().out
    for spec in SweepConfig.from_toml(str(config)).specs():  # every run finished: no exit
        Path(spec.run_dir).mkdir(parents=True)
        stored = {**spec.identity(), "dataset": default_dataset_id(spec.env_id), "provenance": {}}
        (Path(spec.run_dir) / "spec.json").write_text(json.dumps(stored))
        (Path(spec.run_dir) / "summary.json").write_text("{}")
    main(["sweep", str(config)])
    assert "2 runs: 2 finished, 0 not finished" in capsys.readouterr().out


def _kinds_sweep(tmp_path, collect):
    """A sweep of BC and OTPR on seeds 0-2 under ``tmp_path``, and a maker of run records (a CPU each, finished or not)."""
    text = f"""
name = "kinds"
runs_dir = "{tmp_path / "runs"}"
collect_dir = "{tmp_path / collect}"
[[runs]]
env = "FetchPush-v4"
methods = ["bc", "otpr"]
seeds = [0, 1, 2]
"""
    (tmp_path / "sweep.toml").write_text(text)

    def record(where, method, seed, cpu, finished):
        run_dir = tmp_path / where / "FetchPush" / method / f"s{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text(json.dumps({"provenance": {"cpu": cpu}}))
        if finished:
            (run_dir / "summary.json").write_text("{}")
            (run_dir / "evaluations.csv").write_text("timesteps,success,episodes,final,wall_time\n0,0.5,10,1,1.0\n")

    return SweepConfig.from_toml(str(tmp_path / "sweep.toml")), record


def test_cpu_kind_conflicts_are_the_runs_of_unfinished_seeds_made_on_another_kind(tmp_path, capsys, monkeypatch):
    from otpr_sb3.benchmark.cli import main
    from otpr_sb3.benchmark.sweep import cpu_kind_conflicts

    config, record = _kinds_sweep(tmp_path, "results")

    record("results", "bc", 0, "AMD", True)  # seed 0: complete on another kind, no conflict
    record("results", "otpr", 0, "AMD", True)
    record("results", "bc", 1, "AMD", True)  # seed 1: BC finished there, OTPR still to run
    record("runs", "otpr", 2, "AMD", False)  # seed 2: OTPR started there (a spec.json, no evaluation yet)
    record("results", "bc", 2, "Intel", True)
    conflicts = cpu_kind_conflicts(config, cpu="Intel")
    assert [(r["seed"], r["method"], r["state"], r["cpu"]) for r in conflicts] == [
        (1, "bc", "finished", "AMD"),
        (2, "otpr", "started", "AMD"),
    ]
    assert cpu_kind_conflicts(config, cpu="AMD") == [
        {"task": "FetchPush", "method": "bc", "seed": 2, "state": "finished", "cpu": "Intel"}
    ]
    monkeypatch.setattr("otpr_sb3.benchmark.sweep.cpu_info", lambda: {"cpu": "Intel"})  # this machine
    with pytest.raises(SystemExit) as refused:
        main(["sweep", str(tmp_path / "sweep.toml"), "--check-cpu-kind"])
    assert refused.value.code == 4
    assert "2 unfinished seed(s) have runs made on another CPU kind" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "results" / "FetchPush" / "bc" / "s1")
    shutil.rmtree(tmp_path / "runs" / "FetchPush" / "otpr" / "s2")
    main(["sweep", str(tmp_path / "sweep.toml"), "--check-cpu-kind"])  # moved aside: nothing left, returns (0)
    assert "every unfinished seed's runs so far were made on this machine's CPU kind" in capsys.readouterr().out


def test_one_model_name_with_other_flags_is_another_cpu_kind(tmp_path, monkeypatch):
    """Two "AMD EPYC" machines, with and without AVX-512, recorded different robosuite demonstrations from one seed:
    the kind is the model and its flags (a record without flags, of older code, names the model alone)."""
    from otpr_sb3.benchmark.provenance import MACHINE_KIND, cpu_kind
    from otpr_sb3.benchmark.sweep import cpu_kind_conflicts, sweep_status

    assert cpu_kind({"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512f"]}) == "AMD EPYC (avx2, avx512f)"
    assert cpu_kind({"cpu": "AMD EPYC", "cpu_flags": []}) == "AMD EPYC (no listed flags)"
    assert cpu_kind({"cpu": "AMD EPYC"}) == "AMD EPYC" and cpu_kind({}) is None
    assert "cpu_flags" in MACHINE_KIND  # a run resumes, and starts from a checkpoint, only with the same flags
    config, _ = _kinds_sweep(tmp_path, "results")
    run_dir = tmp_path / "results" / "FetchPush" / "bc" / "s1"
    run_dir.mkdir(parents=True)
    origin = {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_bf16"]}
    (run_dir / "spec.json").write_text(json.dumps({"provenance": origin}))
    (run_dir / "summary.json").write_text("{}")
    (run_dir / "evaluations.csv").write_text("timesteps,success,episodes,final,wall_time\n0,0.5,10,1,1.0\n")
    (status,) = [r for r in sweep_status(config) if r["seed"] == 1 and r["method"] == "bc"]
    assert status["cpu"] == "AMD EPYC (avx2, avx512f, avx512_bf16)"
    monkeypatch.setattr("otpr_sb3.benchmark.sweep.cpu_info", lambda: {"cpu": "AMD EPYC", "cpu_flags": ["avx2"]})
    assert [(r["seed"], r["method"]) for r in cpu_kind_conflicts(config)] == [(1, "bc")]
    monkeypatch.setattr("otpr_sb3.benchmark.sweep.cpu_info", lambda: origin)
    assert cpu_kind_conflicts(config) == []


def test_set_aside_moves_the_conflicting_seeds_whole_with_their_checkpoints(tmp_path, capsys, monkeypatch):
    from otpr_sb3.benchmark.cli import main
    from otpr_sb3.benchmark.sweep import cpu_kind_conflicts, set_aside, sweep_status

    config, record = _kinds_sweep(tmp_path, "results/runs")

    for method in ("bc", "otpr"):  # seed 0: complete on the other kind, kept
        record("results/runs", method, 0, "Xeon", True)
    record("results/runs", "bc", 1, "Xeon", True)  # seed 1: BC finished and collected there ...
    record("runs", "bc", 1, "Xeon", True)  # ... with its uncollected copy
    record("runs", "otpr", 1, "Xeon", False)  # and OTPR started there
    pretrained = tmp_path / "runs" / "FetchPush" / "pretrained"
    pretrained.mkdir()
    # the dataset's id names a seed too (1 here): only the run seed's checkpoints, with their lock and origin, move
    names = [f"otpr_fetchpush-100ep-noise30-s1-v0-bc5000-default-s{s}-fmt2.zip" for s in (0, 1, 10)]
    for name in [*names, names[1] + ".lock", names[1].removesuffix(".zip") + ".origin.json"]:
        (pretrained / name).write_text("weights")
    record("runs", "bc", 2, "EPYC", True)  # seed 2: begun on this kind, kept
    before = {p for p in tmp_path.rglob("*") if p.is_file()}

    (tmp_path / "aside" / "FetchPush" / "bc" / "s1").mkdir(parents=True)  # a destination taken: nothing moves
    with pytest.raises(FileExistsError, match="would replace"):
        set_aside(config, str(tmp_path / "aside"), cpu="EPYC")
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == before
    (tmp_path / "aside" / "FetchPush" / "bc" / "s1").rmdir()

    moves = set_aside(config, str(tmp_path / "aside"), cpu="EPYC")
    origin = names[1].removesuffix(".zip") + ".origin.json"
    rel = {(os.path.relpath(s, tmp_path), os.path.relpath(d, tmp_path)) for s, d in moves}
    assert rel == {
        ("results/runs/FetchPush/bc/s1", "aside/FetchPush/bc/s1"),  # the record, beside the results
        ("runs/FetchPush/bc/s1", "runs-set-aside/FetchPush/bc/s1"),
        ("runs/FetchPush/otpr/s1", "runs-set-aside/FetchPush/otpr/s1"),
        (f"runs/FetchPush/pretrained/{names[1]}", f"runs-set-aside/FetchPush/pretrained/{names[1]}"),
        (f"runs/FetchPush/pretrained/{names[1]}.lock", f"runs-set-aside/FetchPush/pretrained/{names[1]}.lock"),
        (f"runs/FetchPush/pretrained/{origin}", f"runs-set-aside/FetchPush/pretrained/{origin}"),
    }
    assert sorted(p.name for p in pretrained.iterdir()) == [names[0], names[2]]  # seeds 0 and 10 keep theirs
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert len(after) == len(before)  # nothing deleted: each moved file is at its destination
    assert all(not os.path.exists(s) and os.path.exists(d) for s, d in moves)
    assert cpu_kind_conflicts(config, cpu="EPYC") == []
    assert [r["state"] for r in sweep_status(config) if r["seed"] == 1] == ["pending", "pending"]
    assert set_aside(config, str(tmp_path / "aside"), cpu="EPYC") == []  # once is enough
    monkeypatch.setattr("otpr_sb3.benchmark.sweep.cpu_info", lambda: {"cpu": "EPYC"})
    main(["sweep", str(tmp_path / "sweep.toml"), "--set-aside", str(tmp_path / "aside2")])
    assert "moved 0 run record(s)" in capsys.readouterr().out
