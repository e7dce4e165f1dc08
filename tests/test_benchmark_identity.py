"""A run is exactly what its spec.json says: identity, provenance, overrides checked at once."""

import json
import os

import pytest
from test_benchmark_runs import ENV, dirs, spec_for  # noqa: F401  (dirs is a fixture)

from otpr_sb3.benchmark import cli
from otpr_sb3.benchmark.provenance import PACKAGES
from otpr_sb3.benchmark.runner import RunSpec, run


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_an_override_is_a_run_of_its_own_and_a_changed_spec_is_refused(dirs):  # noqa: F811
    base = spec_for(dirs, "otpr", steps=100)
    first = run(base)
    spec_path = os.path.join(base.run_dir, "spec.json")
    written = open(spec_path).read()
    # The same request again returns the finished run and leaves its spec.json as it was.
    assert run(base) == first and open(spec_path).read() == written
    # An override gets a directory of its own, next to the default run's.
    tuned = spec_for(dirs, "otpr", steps=100, kwargs={**base.kwargs, "reg": 0.2})
    assert tuned.run_dir != base.run_dir and os.path.dirname(os.path.dirname(tuned.run_dir)).endswith("PointMaze_UMaze")
    assert os.path.basename(os.path.dirname(tuned.run_dir)).startswith("otpr-")
    run(tuned)
    assert _json(os.path.join(tuned.run_dir, "spec.json"))["kwargs"]["reg"] == 0.2
    # A different request for a directory that holds another run is refused, naming what differs.
    longer = spec_for(dirs, "otpr", steps=200)
    assert longer.run_dir == base.run_dir
    with pytest.raises(ValueError, match=r"steps: 100 -> 200"):
        run(longer)
    assert open(spec_path).read() == written
    # How a run executes is not what it is: another thread count resumes the same run.
    assert run(spec_for(dirs, "otpr", steps=100, threads=2)) == first


def test_a_run_being_run_by_another_process_is_refused_at_once(dirs):  # noqa: F811
    """Two processes on one run directory would interleave its checkpoint and evaluations: the second is refused."""
    import fcntl

    from otpr_sb3.benchmark.runner import RUN_LOCK

    spec = spec_for(dirs, "otpr", steps=100, seed=7)  # a run no other test makes (the fixture's folders are shared)
    os.makedirs(spec.run_dir)
    with open(os.path.join(spec.run_dir, RUN_LOCK), "a") as held:  # another process's lock (flock is per open file)
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="is being run by another process"):
            run(spec)
        assert not os.path.exists(os.path.join(spec.run_dir, "spec.json"))  # nothing written
        fcntl.flock(held, fcntl.LOCK_UN)
    assert run(spec)["done"] and run(spec)["steps"] == 100  # once released, the run goes ahead (and is then found)


def test_spec_and_summary_carry_provenance(dirs):  # noqa: F811
    spec = spec_for(dirs, "bc")
    run(spec)
    for name in ("spec.json", "summary.json"):
        origin = _json(os.path.join(spec.run_dir, name))["provenance"]
        assert len(origin["commit"]) == 40 and isinstance(origin["dirty"], bool)
        assert set(origin["versions"]) == set(PACKAGES) and origin["versions"]["torch"].startswith("2.13.0")
        assert origin["cpu"] and isinstance(origin["cpu_flags"], list) and origin["threads"] >= 1
        assert origin["device"] == "cpu" and origin["pair_precision"] in ("float32", "bfloat16")
    assert "threads" not in _json(os.path.join(spec.run_dir, "spec.json"))  # provenance, not identity


def test_git_state_hashes_the_run_code_edits_only(tmp_path):
    """Two dirty trees at one commit are the same code only if their edits of the packages and pins are equal."""
    import subprocess

    from otpr_sb3.benchmark.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    (tmp_path / "otpr_sb3").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "otpr_sb3" / "a.py").write_text("x = 1\n")
    (tmp_path / "docs" / "page.rst").write_text("text\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    clean = git_state(str(tmp_path / "otpr_sb3"))
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["diff"] is None
    (tmp_path / "docs" / "page.rst").write_text("edited\n")  # not run code: dirty, the run code's diff empty
    docs_only = git_state(str(tmp_path))
    assert docs_only["dirty"] is True and docs_only["commit"] == clean["commit"]
    (tmp_path / "docs" / "new.rst").write_text("new\n")
    assert git_state(str(tmp_path)) == docs_only
    (tmp_path / "otpr_sb3" / "a.py").write_text("x = 2\n")
    edited = git_state(str(tmp_path))
    assert edited["dirty"] and edited["diff"] != docs_only["diff"]
    (tmp_path / "otpr_sb3" / "a.py").write_text("x = 1\n")
    (tmp_path / "otpr_sb3" / "b.py").write_text("y = 1\n")  # a new module, not yet added, is run code too
    untracked = git_state(str(tmp_path))
    assert untracked["dirty"] and untracked["diff"] not in (docs_only["diff"], edited["diff"])
    (tmp_path / "otpr_sb3" / "b.py").write_text("y = 2\n")
    assert git_state(str(tmp_path))["diff"] != untracked["diff"]
    plain = tmp_path.parent / (tmp_path.name + "-plain")  # beside the repository, in none
    plain.mkdir()
    assert git_state(str(plain)) == {"commit": None, "dirty": None, "diff": None}


@pytest.mark.parametrize(
    "method, kwargs, policy_kwargs, message",
    [
        ("otpr", {"fooo": 1}, {}, r"unknown algorithm argument\(s\) \['fooo'\].*valid: actor_kwargs, actor_targets"),
        ("otpr", {"dual_kwargs": {"lr": 1}}, {}, r"`dual_kwargs` has unknown keys \['lr'\]"),
        ("otpr", {}, {"fooo": 1}, r"unknown policy argument\(s\) \['policy.fooo'\].*policy.n_candidates"),
        ("sac-demos", {}, {"n_candidates": 4}, r"\['policy.n_candidates'\].*policy.net_arch"),
        ("otpr", {"seed": 3}, {}, r"\['seed'\]"),  # the runner's own
    ],
)
def test_unknown_overrides_are_refused_at_once(method, kwargs, policy_kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunSpec(ENV, method, kwargs=kwargs, policy_kwargs=policy_kwargs)


def test_cli_unknown_set_key_exits_2_with_the_valid_keys(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--env", ENV, "--algo", "otpr", "--set", "fooo=1"])
    assert exit_info.value.code == 2
    assert "unknown algorithm argument(s) ['fooo']" in capsys.readouterr().err
