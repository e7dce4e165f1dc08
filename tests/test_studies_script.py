"""scripts/studies.sh: every study names a commit of this repository that holds its sweep file."""

import importlib.util
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from otpr_sb3.benchmark.sweep import SweepConfig

ROOT = Path(__file__).resolve().parents[1]


def _studies() -> list[list[str]]:
    out = subprocess.run(["bash", "scripts/studies.sh", "list"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line.split(": ", 1)[1].split() for line in out.stdout.splitlines()]


def test_every_study_names_a_commit_holding_its_sweep_file():
    studies = _studies()
    assert len(studies) == 14
    for commit, sweep, results, venv, *record in studies:
        assert venv in (".venv", ".venv-robosuite") and results.startswith("results/") and results.endswith("/runs")
        if sweep.startswith("main:"):  # this checkout's file, run by the study's commit (which must exist)
            exists = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
            if exists.returncode != 0:
                pytest.skip("this clone has no history (shallow)")
            text = (ROOT / sweep.removeprefix("main:")).read_text()
            assert "runs_dir = " in text and "storage = " in text and record == ["-"]
            continue
        shown = subprocess.run(["git", "show", f"{commit}:{sweep}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode != 0 and "unknown revision" in shown.stderr + shown.stdout:
            pytest.skip("this clone has no history (shallow)")
        assert shown.returncode == 0, f"{commit} does not hold {sweep}: {shown.stderr}"
        assert "runs_dir = " in shown.stdout and "storage = " in shown.stdout
        assert record == ["-"] or record[0] == "--mix"


def test_an_unknown_study_is_refused_before_anything_runs():
    out = subprocess.run(["bash", "scripts/studies.sh", "run", "claims-c", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown study 'nope'" in out.stderr


def _sweep_first():
    spec = importlib.util.spec_from_file_location("sweep_first", ROOT / "scripts" / "sweep_first.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_starts_each_seeds_longest_run_first_and_runs_the_same_runs():
    text = (ROOT / "examples" / "sweeps" / "baselines_report.toml").read_text()
    moved = _sweep_first().move_first(text, "FetchPush-v4", "rlpd-her")
    assert sorted(moved.splitlines()) == sorted(text.splitlines())  # every line kept, comments too
    before, after = (SweepConfig.from_dict(tomllib.loads(t)) for t in (text, moved))
    assert {k: v for k, v in vars(before).items() if k != "runs"} == {k: v for k, v in vars(after).items() if k != "runs"}
    key = [(r["env_id"], r["method"], r["seed"]) for r in before.runs]
    assert sorted(key) == sorted((r["env_id"], r["method"], r["seed"]) for r in after.runs)
    for seed in (0, 1, 2):  # the seeds RLPD-HER runs on Push
        first = next(r for r in after.runs if r["seed"] == seed)
        assert (first["env_id"], first["method"]) == ("FetchPush-v4", "rlpd-her")
        last = [r for r in before.runs if r["seed"] == seed][-1]
        assert last["method"] == "rlpd-her"  # the file's own order: RLPD-HER last within each seed
    with pytest.raises(ValueError, match="no \\[\\[runs\\]\\] group of env 'FetchPush-v4' with methods \\['sac'\\]"):
        _sweep_first().move_first(text, "FetchPush-v4", "sac")


def test_a_moved_group_takes_its_comments_along():
    text = (
        'name = "x"\n\n# bc\n[[runs]]\nenv = "A-v1"\nmethods = ["bc"]\n\n'
        '# rlpd: the long one\n# (two lines)\n[[runs]]\nenv = "A-v1"\nmethods = ["rlpd"]\n'
    )
    moved = _sweep_first().move_first(text, "A-v1", "rlpd")
    assert moved == (
        'name = "x"\n\n# rlpd: the long one\n# (two lines)\n[[runs]]\nenv = "A-v1"\nmethods = ["rlpd"]\n'
        '# bc\n[[runs]]\nenv = "A-v1"\nmethods = ["bc"]\n\n'
    )


def test_pages_regenerates_only_the_reports_under_way():
    out = subprocess.run(["bash", "scripts/studies.sh", "pages", "claims-c"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "no pages step for 'claims-c' (baselines-report, claims-candidates-a" in out.stderr
    assert "metaworld, robosuite and robosuite-lift only" in out.stderr
    out = subprocess.run(["bash", "scripts/studies.sh", "pages", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown study 'nope'" in out.stderr


def test_prepare_writes_the_sweep_with_its_paths_outside_git_and_max_concurrent(tmp_path):
    env = {**os.environ, "STUDIES": str(tmp_path), "MAX_CONCURRENT": "1"}
    out = subprocess.run(
        ["bash", "scripts/studies.sh", "prepare", "claims-candidates-tuning"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    if "did not match any file" in out.stderr or "unknown revision" in out.stderr or "reference is not a tree" in out.stderr:
        pytest.skip("this clone has no history (shallow)")
    assert out.returncode == 0, out.stderr
    written = tmp_path / "claims-candidates-tuning" / "sweep.toml"
    assert out.stdout.strip() == str(written)
    config = tomllib.loads(written.read_text())
    assert config["max_concurrent"] == 1 and config["threads_per_trial"] == 1
    assert config["runs_dir"] == str(tmp_path / "claims-candidates-tuning" / "runs")
    assert config["data_path"] == str(tmp_path / "minari")
    assert config["collect_dir"] == str(ROOT / "results" / "claims" / "candidates_tuning" / "runs")
    original = tomllib.loads((ROOT / "examples" / "sweeps" / "claims_candidates_tuning.toml").read_text())
    assert config["runs"] == original["runs"] and config["defaults"] == original["defaults"]


BOTH = ["claims-b", "claims-d"]
LEFT, DONE = "2 runs: 1 finished, 1 started, 0 pending", "2 runs: 2 finished, 0 started, 0 pending"


@pytest.mark.parametrize(
    ("status", "counts", "ran"),
    [
        (130, LEFT, ["claims-b"]),  # stopped: the chain stops
        (0, LEFT, ["claims-b"]),  # stopped, in a clone whose `otpr sweep` exited 0 then (before b2062f1)
        (1, LEFT, BOTH),  # a run failed: the chain goes on
        (0, DONE, BOTH),
    ],
)
def test_a_chain_stops_when_a_sweep_was_stopped_and_goes_on_after_a_failure(tmp_path, status, counts, ran):
    """`run A B`: B starts after A's runs all finished or one failed, not after they were stopped."""
    out = _chain(tmp_path, status, counts)
    swept = [line.split()[-1].split("/")[-2] for line in (tmp_path / "sweeps.log").read_text().splitlines()]
    assert swept == ran
    # each study's datasets are recorded (by its clone's code, under the lock) before its sweep starts
    recorded = [line.split("/")[-2] for line in (tmp_path / "datasets.log").read_text().splitlines()]
    assert recorded == ran
    assert out.returncode == (0 if ran == BOTH else 130), out.stderr
    if ran != BOTH:
        assert f"claims-b: runs left ({LEFT}); the chain stops here" in out.stdout
    assert out.stdout.count("the sweep failed (see its sweep.log); the chain goes on") == (2 if status == 1 else 0)


def test_a_study_with_seeds_begun_on_another_cpu_kind_is_not_run(tmp_path):
    out = _chain(tmp_path, 0, DONE, kinds=4)
    assert out.returncode == 4 and "claims-b: seeds begun on another CPU kind (above); the chain stops here" in out.stdout
    assert not (tmp_path / "sweeps.log").exists()  # no sweep started
    out = _chain(tmp_path / "skipped", 0, DONE, kinds=4, check="0")  # CPU_KIND_CHECK=0: run anyway
    assert out.returncode == 0 and len((tmp_path / "skipped" / "sweeps.log").read_text().splitlines()) == 2


def test_set_aside_moves_a_studys_seeds_into_its_results_set_aside_folder(tmp_path):
    out = _chain(tmp_path, 0, DONE, args=("set-aside", "claims-b", "xeon"))
    assert out.returncode == 0, out.stderr
    (line,) = (tmp_path / "setaside.log").read_text().splitlines()
    dest = tmp_path / "repo" / "results" / "claims" / "report" / "set_aside_xeon"
    assert line.endswith(f"sweep {tmp_path / 'studies' / 'claims-b' / 'sweep.toml'} --set-aside {dest}")
    out = _chain(tmp_path / "no-kind", 0, DONE, args=("set-aside", "claims-b"))
    assert out.returncode == 2 and "usage: bash scripts/studies.sh set-aside NAME KIND" in out.stderr
    out = _chain(tmp_path / "stops", 0, DONE, kinds=4)
    assert "(run it on that kind, or: bash scripts/studies.sh set-aside claims-b KIND)" in " ".join(out.stdout.split())


def _chain(tmp_path, status, counts, kinds=0, check="1", args=("run", "claims-b", "claims-d")):
    """`studies.sh run claims-b claims-d` (or ``args``) in a clone, with a fake python (see below)."""
    tmp_path.mkdir(exist_ok=True)
    repo = tmp_path / "repo"
    cloned = subprocess.run(["git", "clone", "--quiet", "--shared", str(ROOT), str(repo)], capture_output=True, text=True)
    assert cloned.returncode == 0, cloned.stderr
    shown = subprocess.run(["git", "cat-file", "-e", "8d4c5c5^{commit}"], cwd=repo, capture_output=True)
    if shown.returncode != 0:
        pytest.skip("this clone has no history (shallow)")
    shutil.copy(ROOT / "scripts" / "studies.sh", repo / "scripts" / "studies.sh")  # this checkout's, not HEAD's
    # The chain's python, faked: a sweep logs its study and exits with `status`; --status prints `counts` and exits
    # as `--exit-code` asks (3 when runs are left); --check-cpu-kind exits `kinds` (4: seeds begun on another kind).
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        f'#!/bin/sh\ncase "$*" in *--status*) echo "{counts}"; exit {0 if counts == DONE else 3} ;; esac\n'
        f'case "$*" in *--check-cpu-kind*) exit {kinds} ;; esac\n'
        f'case "$*" in *--set-aside*) echo "$@" >> {tmp_path}/setaside.log; exit 0 ;; esac\n'
        f'if [ "$1" = "-c" ]; then echo "$3" >> {tmp_path}/datasets.log; exit 0; fi\n'  # the datasets step
        f'echo "$@" >> {tmp_path}/sweeps.log\nexit {status}\n'
    )
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", "scripts/studies.sh", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "STUDIES": str(tmp_path / "studies"), "CPU_KIND_CHECK": check},
    )
