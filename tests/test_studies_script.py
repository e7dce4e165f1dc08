"""scripts/studies.sh: every study names a commit of this repository that holds its sweep file."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _studies() -> list[list[str]]:
    out = subprocess.run(["bash", "scripts/studies.sh", "list"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line.split(": ", 1)[1].split() for line in out.stdout.splitlines()]


def test_every_study_names_a_commit_holding_its_sweep_file():
    studies = _studies()
    assert len(studies) == 9
    for commit, sweep, results, venv, *record in studies:
        assert venv in (".venv", ".venv-robosuite") and results.startswith("results/") and results.endswith("/runs")
        shown = subprocess.run(["git", "show", f"{commit}:{sweep}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode != 0 and "unknown revision" in shown.stderr + shown.stdout:
            pytest.skip("this clone has no history (shallow)")
        assert shown.returncode == 0, f"{commit} does not hold {sweep}: {shown.stderr}"
        assert "runs_dir = " in shown.stdout and "storage = " in shown.stdout
        assert record == ["-"] or record[0] == "--mix"


def test_an_unknown_study_is_refused_before_anything_runs():
    out = subprocess.run(["bash", "scripts/studies.sh", "run", "claims-c", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown study 'nope'" in out.stderr
