"""Every method configuration of the benchmark runs through the runner, and an interrupted run resumes."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
from otpr_helpers import small_run_spec
from stable_baselines3 import SAC

from otpr_sb3 import IBRL, OTPR, Demonstrations
from otpr_sb3.benchmark.demo_buffers import HerDictReplayBuffer
from otpr_sb3.benchmark.evaluation import read_evaluations
from otpr_sb3.benchmark.methods import METHODS, get_method
from otpr_sb3.benchmark.pretrained import SHARED_ORIGIN
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.recording import record
from otpr_sb3.benchmark.runner import RunSpec, fresh_model, run
from otpr_sb3.rlpd import RLPD

ENV = "PointMaze_UMaze-v3"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    card = record(ENV, episodes=3, noise=0.3, seed=0, data_path=str(root / "minari"))
    return root, card.dataset_id


def spec_for(dirs, method, steps=200, **extra):
    root, dataset = dirs
    return small_run_spec(root, ENV, method, dataset, steps=steps, **extra)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_runs_and_logs_its_evaluations(dirs, method):
    spec = spec_for(dirs, method)
    seen = []
    summary = run(spec, on_evaluation=seen.append)
    rows = read_evaluations(f"{spec.run_dir}/evaluations.csv")
    assert rows == [{k: float(v) for k, v in r.items()} for r in seen]  # the hook saw exactly the logged rows
    if method == "bc":
        assert [r["timesteps"] for r in rows] == [0] and rows[0]["final"] == 1
    else:
        assert [r["timesteps"] for r in rows] == [0, 100, 200]
        assert [r["episodes"] for r in rows] == [2, 1, 2]  # the start and the end on the final evaluation's episodes
        assert summary["steps"] == 200 and summary["env_steps_per_s"] > 0
    assert summary["done"] and summary["final_success"] == rows[-1]["success"]
    # The final model also acts as it collects, on the same episodes; behaviour cloning never collects.
    stochastic = summary["final_success_stochastic"]
    assert stochastic is None if method == "bc" else 0.0 <= stochastic <= 1.0
    with open(f"{spec.run_dir}/summary.json") as f:
        assert json.load(f) == summary
    with open(f"{spec.run_dir}/spec.json") as f:
        recorded = f.read()
    assert json.loads(recorded)["method"] == method and str(dirs[0]) not in recorded  # no machine paths
    assert spec.run_dir and __import__("os").path.exists(f"{spec.run_dir}/model.zip")
    # A finished run is not run again.
    assert run(spec) == summary


def test_variants_start_from_the_same_pretrained_checkpoint(dirs):
    # Both were fine-tuned by the parametrized test; their step-0 evaluation is of the same pretrained actor.
    otpr = read_evaluations(f"{spec_for(dirs, 'otpr').run_dir}/evaluations.csv")
    idql = read_evaluations(f"{spec_for(dirs, 'idql').run_dir}/evaluations.csv")
    bc = read_evaluations(f"{spec_for(dirs, 'bc').run_dir}/evaluations.csv")
    assert otpr[0]["success"] == idql[0]["success"] == bc[0]["success"]
    root = dirs[0]
    # One checkpoint for the small architecture these variants share (DSRL steers the default architecture's).
    assert len([p for p in (root / "runs" / "PointMaze_UMaze" / "pretrained").glob("*.zip") if "-default-" not in p.name]) == 1
    model = OTPR.load(f"{spec_for(dirs, 'idql').run_dir}/model.zip")
    assert model.policy.guidance.name == "expectile" and model.pretrained and len(model.expert_obs) > 0
    model = OTPR.load(f"{spec_for(dirs, 'otpr').run_dir}/model.zip")  # H keeps the keypoints it was given
    assert model.policy.guidance.name == "compatibility" and len(model.policy.guidance.keypoint_obs) == 4


@pytest.mark.parametrize("method", ["otpr", "dsrl", "bc"])
def test_fresh_model_is_where_a_run_starts_and_ignores_its_checkpoint(dirs, method):
    spec = spec_for(dirs, method)
    run(spec)  # a finished run (already, in the full suite), with its checkpoint in the run directory
    model, make_env = fresh_model(spec)
    assert model.num_timesteps == 0  # not the run's checkpoint
    if method == "bc":
        assert isinstance(model, OTPR) and model.pretrained
        return
    env = make_env()
    if method == "dsrl":  # SAC over the frozen actor's noise, no demonstrations
        assert isinstance(model, SAC) and type(env).__name__ == "NoiseSteeringWrapper" and model.replay_buffer.size() == 0
    else:  # the pretrained actor, the demonstrations in replay, the same start as the run's
        assert model.pretrained and model.replay_buffer.size() > 0
        started = read_evaluations(f"{spec.run_dir}/evaluations.csv")[0]["success"]
        from otpr_sb3.benchmark.evaluation import success_rate
        from otpr_sb3.benchmark.tasks import get_task

        assert success_rate(model, get_task(ENV), spec.final_eval_episodes, env=env) == started
    model.learn(20)  # it trains


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("method", ["otpr", "sac-demos", "dsrl", "ibrl", "rlpd", "otpr-her"])
def test_interrupted_run_resumes_from_its_checkpoint(dirs, method, tmp_path):
    spec = spec_for(dirs, method, steps=300, runs_dir=str(tmp_path / "runs"))

    def stop_at_200(row):
        if row["timesteps"] == 200:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(spec, on_evaluation=stop_at_200)
    before = read_evaluations(f"{spec.run_dir}/evaluations.csv")
    assert [r["timesteps"] for r in before] == [0, 100, 200]
    algo = {"otpr": OTPR, "ibrl": IBRL, "rlpd": RLPD}.get(get_method(method).algo, SAC)
    ckpt = algo.load(f"{spec.run_dir}/checkpoint/model.zip")
    assert ckpt.num_timesteps == 200
    summary = run(spec)
    after = read_evaluations(f"{spec.run_dir}/evaluations.csv")
    assert after[:3] == before  # nothing redone or lost
    assert [r["timesteps"] for r in after] == [0, 100, 200, 300] and after[-1]["final"] == 1
    assert np.all(np.diff([r["wall_time"] for r in after]) > 0)  # wall-clock counts across the resume
    assert np.all(np.diff([r["cpu_time"] for r in after]) > 0) and after[0]["cpu_time"] > 0  # and so does CPU time
    assert summary["steps"] == 300
    final = algo.load(f"{spec.run_dir}/model.zip")
    assert final.num_timesteps == 300
    if method == "otpr-her":  # the relabelling buffer is what the checkpoint saved and the resumed run trained on
        final.load_replay_buffer(f"{spec.run_dir}/checkpoint/replay_buffer.pkl")
        assert type(final.replay_buffer) is HerDictReplayBuffer and final.replay_buffer.env_id == ENV
    if method == "otpr":
        assert final._n_updates > ckpt._n_updates
        # The replay buffer came back with the checkpoint: demonstrations and the first 200 online steps.
        assert final.pretrained and th.equal(final.policy.guidance.keypoint_obs, ckpt.policy.guidance.keypoint_obs)


def test_bad_specs_are_refused(dirs):
    with pytest.raises(ValueError, match="method"):
        spec_for(dirs, "td3")
    with pytest.raises(ValueError, match="method"):
        get_method("dql-v2")
    with pytest.raises(ValueError, match="benchmark tasks"):
        RunSpec(env_id="Hopper-v5", method="otpr")
    with pytest.raises(ValueError, match="steps"):
        spec_for(dirs, "otpr", steps=0)
    root, dataset = dirs
    wrong_env = RunSpec(
        env_id="FetchPush-v4", method="otpr", dataset=dataset, data_path=str(root / "minari"), runs_dir=str(root / "x")
    )
    with pytest.raises(ValueError, match="holds PointMaze"):
        run(wrong_env)


def _import_tasks_stderr(before: str = "") -> str:
    code = before + "import otpr_sb3.benchmark.tasks, gymnasium as gym; gym.spec('FetchPickAndPlace-v4')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stderr


def test_the_harness_drops_only_gymnasium_robotics_adroit_notice():
    assert "AdroitHand" not in _import_tasks_stderr()  # printed at every `otpr` command before
    other = (
        "import farama_notifications, importlib.metadata as md; "
        "farama_notifications.notifications.setdefault('gymnasium_robotics', {})"
        "[md.version('gymnasium-robotics')] = 'Another notice'; "
    )
    assert "Another notice" in _import_tasks_stderr(other)


def test_the_readme_demo_prints_no_adroit_notice():
    # examples/train_fetch.py is the README demo's job; it imported gymnasium_robotics itself and printed the notice
    path = Path(__file__).resolve().parents[1] / "examples" / "train_fetch.py"
    code = (
        "import importlib.util; "
        f"spec = importlib.util.spec_from_file_location('train_fetch', {str(path)!r}); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "import gymnasium as gym; gym.spec('FetchPickAndPlace-v4')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "AdroitHand" not in done.stderr


def _interrupted_at_100(dirs, tmp_path):
    """An OTPR run of 200 steps stopped after its evaluation at 100."""
    spec = spec_for(dirs, "otpr", steps=200, runs_dir=str(tmp_path / "runs"))

    def stop_at_100(row):
        if row["timesteps"] == 100:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(spec, on_evaluation=stop_at_100)
    return spec


def test_a_run_started_on_another_kind_of_machine_is_not_resumed_here(dirs, tmp_path):
    spec = _interrupted_at_100(dirs, tmp_path)
    path = Path(spec.run_dir) / "spec.json"
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, "provenance": {**recorded["provenance"], "cpu": "Another CPU"}}))
    before = read_evaluations(f"{spec.run_dir}/evaluations.csv")
    kind = re.escape("started on another kind of machine or with other code or data (cpu 'Another CPU' -> ")
    with pytest.raises(RuntimeError, match=kind):
        run(spec)
    assert read_evaluations(f"{spec.run_dir}/evaluations.csv") == before  # nothing written
    path.write_text(json.dumps(recorded))  # on its own kind it resumes
    assert run(spec)["steps"] == 200


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"commit": "0" * 40}, "commit '0000000000000000000000000000000000000000' -> "),
        ({"diff": "an edited tree"}, "diff 'an edited tree' -> "),
        ({"versions": {"torch": "1.0"}}, "versions['torch'] '1.0' -> "),
        ({"data_sha1": "other demonstrations"}, "data_sha1 'other demonstrations' -> "),
    ],
)
def test_a_run_started_with_other_code_or_data_is_not_resumed(dirs, tmp_path, change, named):
    spec = _interrupted_at_100(dirs, tmp_path)
    path = Path(spec.run_dir) / "spec.json"
    recorded = json.loads(path.read_text())
    origin = recorded["provenance"]
    assert {"commit", "dirty", "diff", "versions", "data_sha1"} <= set(origin)
    demos = Demonstrations.from_minari(dirs[1], data_path=str(dirs[0] / "minari"))
    assert origin["data_sha1"] == demos.digest()  # the numbers the run learnt from
    changed = {k: ({**origin[k], **v} if isinstance(v, dict) else v) for k, v in change.items()}
    path.write_text(json.dumps({**recorded, "provenance": {**origin, **changed}}))
    before = read_evaluations(f"{spec.run_dir}/evaluations.csv")
    with pytest.raises(RuntimeError, match=re.escape(named)):
        run(spec)
    assert read_evaluations(f"{spec.run_dir}/evaluations.csv") == before


def test_a_pretrained_checkpoint_is_used_only_where_and_with_the_code_it_was_made(dirs, tmp_path):
    runs = tmp_path / "runs"
    run(spec_for(dirs, "bc", runs_dir=str(runs)))
    (checkpoint,) = (runs / "PointMaze_UMaze" / "pretrained").glob("*.zip")
    origin_file = checkpoint.with_name(checkpoint.name.removesuffix(".zip") + ".origin.json")
    origin = json.loads(origin_file.read_text())
    here = provenance("auto", demos=Demonstrations.from_minari(dirs[1], data_path=str(dirs[0] / "minari")))
    assert {k: origin[k] for k in SHARED_ORIGIN} == {k: here[k] for k in SHARED_ORIGIN}
    otpr = spec_for(dirs, "otpr", runs_dir=str(runs))
    origin_file.write_text(json.dumps({**origin, "cpu": "Another CPU"}))
    with pytest.raises(
        RuntimeError, match=re.escape("made on another kind of machine or with other code or data (cpu 'Another CPU' -> ")
    ):
        run(otpr)
    assert not (Path(otpr.run_dir) / "spec.json").exists()  # refused before the run's record is written
    fresh_model(otpr, check_origin=False)  # timing a study's checkpoints with newer code is allowed
    origin_file.unlink()
    with pytest.raises(RuntimeError, match="has no record of where it was made"):
        run(otpr)
    origin_file.write_text(json.dumps(origin))
    assert run(otpr)["steps"] == 200
