"""Run diagnostics: medians of the dual's logged scalars after the dual is ready, from TensorBoard into summary.json."""

import json

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from otpr_sb3.benchmark.diagnostics import add_diagnostics, read_diagnostics


def write_log(path, ready_at, errors, gaps):
    writer = SummaryWriter(str(path))
    for step, (err, gap) in enumerate(zip(errors, gaps)):
        writer.add_scalar("train/dual_ready", float(step >= ready_at), step)
        writer.add_scalar("train/marginal_error", err, step)
        writer.add_scalar("train/dual_gap", gap, step)
    writer.close()


def test_medians_after_the_dual_is_ready_from_the_newest_run(tmp_path):
    tb = tmp_path / "tb"
    write_log(tb / "OTPR_1", ready_at=0, errors=[9.0] * 5, gaps=[9.0] * 5)  # a start-over: not this run
    errors, gaps = [5.0, 5.0, 0.3, 0.1, 0.2, 0.05], [1.0, 1.0, 0.01, 0.02, 0.03, 0.04]
    write_log(tb / "OTPR_2", ready_at=2, errors=errors, gaps=gaps)
    out = read_diagnostics(str(tb))
    assert out["dual_ready_step"] == 2
    assert out["marginal_error"] == pytest.approx(np.median(errors[2:]))
    assert out["dual_gap"] == pytest.approx(np.median(gaps[2:]))
    assert "h_nonzero_frac" not in out  # not logged
    assert read_diagnostics(str(tmp_path / "missing")) == {}


def test_add_diagnostics_updates_the_summary(tmp_path):
    with pytest.raises(FileNotFoundError):
        add_diagnostics(str(tmp_path))
    (tmp_path / "summary.json").write_text(json.dumps({"done": True, "final_success": 0.9}))
    write_log(tmp_path / "tb" / "OTPR_1", ready_at=1, errors=[1.0, 0.1, 0.2], gaps=[1.0, 0.0, 0.0])
    summary = add_diagnostics(str(tmp_path))
    assert summary["final_success"] == 0.9 and summary["diagnostics"]["marginal_error"] == pytest.approx(0.15)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
