"""Every method's short fixed-seed run against the recording made before the architecture refactor (issue 24).

The tolerances are those of float rounding. Rerunning the recording with two torch threads instead of one (which
changes the order of the sums in matrix products) moved logged values by at most 2e-5 relative, actions by 1e-5 and
parameter sums by 1e-6 of their absolute sum. The refactored code differs from the recording by rounding too: SB3's
``polyak_update`` (scale, then add) replaced a lerp, and a few sums are taken in another order; logged values moved by
at most 1e-4 relative (2e-6 absolute on values near 0), actions by 1e-5. A change of behaviour (another random draw,
another update) moves them by orders of magnitude more.
"""

import json

import numpy as np
import pytest
from behaviour_recording import CONFIGS, PATH, run_config

with open(PATH) as f:
    RECORDING = json.load(f)["runs"]


#: Logged values removed on purpose: ``train/cost_scale`` is the scale of the dual's cost, which only the H guidance has.
REMOVED = {"otpr-q", "otpr-adv", "idql", "dql"}
#: Shares of counted pairs or candidates. A pair whose weight sits at the clip of ``H`` within rounding can fall on
#: either side on another CPU: on an Intel Xeon (AVX-512), 2026-12-06, one pair of 136 moved from-scratch's
#: ``train/h_nonzero_frac`` by 0.0074 while its 1,830 other logged values stayed within 1e-5 relative. A share may
#: differ by 0.01 (one count in a hundred); a change of behaviour moves the other values too.
COUNTED = {"rollout/h_fallback_frac", "train/h_nonzero_frac", "train/h_nonzero_frac_heldout"}
COUNTED |= {"train/target_fallback_frac", "train/target_replay_frac"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_matches_the_recording(name):
    got, want = run_config(name), dict(RECORDING[name])
    if name in REMOVED:
        want["log"] = [(k, v) for k, v in want["log"] if k != "train/cost_scale"]
    assert [k for k, _ in got["log"]] == [k for k, _ in want["log"]], "the logged keys or their order changed"
    x = np.array([v for _, v in got["log"]])
    y = np.array([v for _, v in want["log"]])
    counted = np.array([k in COUNTED for k, _ in want["log"]])
    worst = int(np.argmax(np.where(counted, 0.0, np.abs(x - y) / (np.abs(y) + 1e-3))))
    assert np.allclose(x[~counted], y[~counted], rtol=2e-4, atol=1e-5), f"{want['log'][worst][0]}: {x[worst]} != {y[worst]}"
    assert np.abs(x[counted] - y[counted]).max(initial=0.0) <= 0.01
    np.testing.assert_allclose(got["actions"], want["actions"], rtol=0, atol=2e-4)
    assert abs(got["parameter_sum"] - want["parameter_sum"]) <= 2e-5 * want["parameter_abs_sum"]
    assert got["parameter_abs_sum"] == pytest.approx(want["parameter_abs_sum"], rel=2e-5)
