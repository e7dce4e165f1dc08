"""The decision rule of paired comparisons (docs/claims.rst): verdicts, intervals, seeds to decide, bad input."""

import json

import numpy as np
import pytest
from otpr_helpers import load_script

from otpr_sb3.benchmark.decision import MARGIN, bootstrap_interval, decide, paired_seeds, seeds_needed, t_interval


def _with_moments(n, mean, std, seed=0):
    """``n`` values with exactly this mean and sample standard deviation."""
    x = np.random.default_rng(seed).normal(size=n)
    return mean + std * (x - x.mean()) / x.std(ddof=1)


def test_the_four_verdicts():
    assert decide(np.full(10, 0.1)).verdict == "holds"
    assert decide(np.full(10, -0.1)).verdict == "reversed"
    assert decide(_with_moments(10, 0.0, 0.02)).verdict == "equivalent"
    undecided = decide(_with_moments(10, 0.04, 0.2))
    assert undecided.verdict == "undecided" and undecided.seeds_needed > 10


def test_a_constant_difference_has_a_zero_width_interval():
    d = decide(np.full(12, 0.25))
    assert d.ci95 == d.ci90 == (0.25, 0.25) and d.mean == 0.25 and d.seeds == 12 and d.seeds_needed is None


def test_the_bootstrap_interval_is_the_normal_one_on_a_large_sample():
    x = np.random.default_rng(1).normal(0.1, 0.3, size=400)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(len(x))
    lo, hi = bootstrap_interval(x, 0.95, reps=4_000)
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half) and hi == pytest.approx(x.mean() + half, abs=0.1 * half)
    lo90, hi90 = bootstrap_interval(x, 0.90, reps=4_000)
    assert lo < lo90 < hi90 < hi  # nested


def test_the_interval_is_reproducible_and_leaves_the_global_rng_alone():
    x = _with_moments(10, 0.05, 0.2)
    np.random.seed(3)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    assert bootstrap_interval(x, 0.95, seed=7) == bootstrap_interval(x, 0.95, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002


@pytest.mark.parametrize("mean", [0.06, 0.02])
def test_the_seeds_to_decide_do_decide(mean):
    """At the seeds it names, a comparison with the same mean and spread is decided (holds or equivalent)."""
    std = 0.15
    d = decide(_with_moments(10, mean, std))
    assert d.verdict == "undecided"
    n = d.seeds_needed
    assert n == seeds_needed(mean, std)
    assert decide(_with_moments(n, mean, std)).verdict in ("holds", "equivalent")
    assert decide(_with_moments(max(10, n // 2), mean, std)).verdict == "undecided"


def test_seeds_needed_is_the_first_n_whose_t_interval_decides():
    from scipy.stats import t

    n = seeds_needed(0.1, 0.2)  # the sign decides first
    assert t.ppf(0.975, n - 1) * 0.2 / np.sqrt(n) < 0.1 <= t.ppf(0.975, n - 2) * 0.2 / np.sqrt(n - 1)
    assert n >= np.ceil((1.959964 * 0.2 / 0.1) ** 2)  # never fewer than the normal approximation
    n = seeds_needed(0.0, 0.1)  # only equivalence can decide
    assert t.ppf(0.95, n - 1) * 0.1 / np.sqrt(n) <= MARGIN < t.ppf(0.95, n - 2) * 0.1 / np.sqrt(n - 1)
    assert seeds_needed(0.0, float("nan")) is None and seeds_needed(0.0, 1e6) is None


def test_fewer_than_ten_seeds_are_pending():
    d = decide(np.array([0.3, 0.25, 0.35]))
    assert d.verdict == "pending" and d.seeds_needed == 10
    assert decide(np.array([0.3])).seeds_needed is None  # one seed: no spread


def test_the_t_interval_is_the_textbook_one():
    from scipy.stats import t

    lo, hi = t_interval(np.array([1.0, 2.0, 3.0]), 0.95)  # mean 2, standard error 1 / sqrt(3), 2 degrees of freedom
    half = t.ppf(0.975, 2) / np.sqrt(3)
    assert (lo, hi) == pytest.approx((2 - half, 2 + half), rel=1e-12)
    assert t_interval(np.full(4, 0.2), 0.9) == pytest.approx((0.2, 0.2))
    with pytest.raises(ValueError, match="two values"):
        t_interval(np.array([0.1]), 0.95)
    with pytest.raises(ValueError, match="level"):
        t_interval(np.ones(3), 0.0)


def test_at_three_seeds_the_bootstrap_decides_where_the_t_interval_does_not():
    diffs = np.array([0.05, 0.10, 0.30])  # all positive, widely spread
    boot, cautious = decide(diffs, min_seeds=3), decide(diffs, min_seeds=3, interval="t")
    assert boot.verdict == "holds" and boot.ci95[0] > 0
    assert cautious.verdict == "undecided" and cautious.ci95[0] < 0 < cautious.ci95[1]
    assert cautious.mean == boot.mean and boot.seeds_needed is None and cautious.seeds_needed > 3
    assert decide(np.full(3, 0.2), min_seeds=3, interval="t").verdict == "holds"  # no spread: both decide
    assert decide(np.array([0.2]), min_seeds=3, interval="t").ci95 == (0.2, 0.2)  # one seed: pending, zero width
    with pytest.raises(ValueError, match="interval"):
        decide(diffs, interval="normal")


@pytest.mark.parametrize(
    "diffs, kwargs, match",
    [
        ([], {}, "non-empty"),
        ([[0.1, 0.2]], {}, "1-D"),
        ([0.1, float("nan")], {}, "finite"),
        ([0.1] * 10, {"margin": 0.0}, "margin"),
        ([0.1] * 10, {"min_seeds": 1}, "min_seeds"),
    ],
)
def test_bad_input_is_named(diffs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        decide(np.asarray(diffs, dtype=float), **kwargs)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(np.ones(3), 1.5)


def _fake_run(root, method, kwargs, seed, successes, commit="abc1234", cpu="AMD EPYC", policy_kwargs=None):
    name = f"{method}-{abs(hash(json.dumps(kwargs, sort_keys=True))) % 10**8:08d}"
    run_dir = root / "FetchPickAndPlace" / name / f"s{seed}"
    run_dir.mkdir(parents=True)
    spec = {
        "method": method,
        "kwargs": kwargs,
        "policy_kwargs": policy_kwargs or {},
        "env_id": "FetchPickAndPlace-v4",
        "dataset": "otpr/fetchpickandplace-100ep-noise30-s0-v0",
        "seed": seed,
        "provenance": {"commit": commit + "0" * 33, "cpu": cpu},
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    rows = ["timesteps,success,episodes,final,wall_time"]
    rows += [f"{1000 * i},{s},20,0,{i}" for i, s in enumerate(successes)]
    (run_dir / "evaluations.csv").write_text("\n".join(rows) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({"final_success": successes[-1], "env_steps_per_s": 20.0}))


def test_claims_verdicts_pair_by_seed_and_refuse_mixed_commits(tmp_path):
    module = load_script("examples/claims/claims_verdicts.py")
    h = {"reg": 0.05, "relation_weight": 0.1}
    unmasked = {"reg": 0.05, "use_mask": False, "relation_weight": 0.0}
    for seed in range(10):
        _fake_run(tmp_path, "otpr", h, seed, [0.3] + [0.8] * 10)
        _fake_run(tmp_path, "otpr", unmasked, seed, [0.3] + [0.6] * 10)
    _fake_run(tmp_path, "otpr", h, 10, [0.3] + [0.8] * 10)  # no unmasked partner: not paired
    rows = module.verdicts(module.report_runs(str(tmp_path)))
    assert [(r["claim"], r["regime"], r["metric"]) for r in rows] == [("4", "a", "last five"), ("4", "a", "AUC")]
    last_five = rows[0]["decision"]
    assert last_five.verdict == "holds" and last_five.seeds == 10 and last_five.mean == pytest.approx(0.2)
    assert "holds" in module.verdict_table(rows)
    tables = module.tables(str(tmp_path), failures_path=None)
    assert (
        set(tables) == {"claims_report_runs.inc", "claims_live.inc", "claims_verdicts.inc"}
        and tables["claims_report_runs.inc"].count("* - (a)") == 21
    )
    _fake_run(tmp_path, "otpr", unmasked, 10, [0.3] + [0.6] * 10, commit="def5678")
    with pytest.raises(ValueError, match="more than one code commit"):
        module.verdicts(module.report_runs(str(tmp_path)))
    # Each regime is its own dataset: (b)'s 25 demonstrations are not (a)'s, and an unknown dataset is refused.
    assert module.regime_of("FetchPickAndPlace-v4", "otpr/fetchpickandplace-25ep-noise30-s0-v0") == "b"
    with pytest.raises(ValueError, match="not the dataset of a regime"):
        module.regime_of("FetchPickAndPlace-v4", "otpr/fetchpickandplace-50ep-noise30-s0-v0")


def test_last_five_is_the_mean_of_the_last_five_evaluations_and_needs_five():
    from otpr_sb3.benchmark.decision import last_five

    rows = [{"success": s} for s in (0.0, 0.1, 0.5, 0.6, 0.7, 0.8, 0.9)]
    assert last_five(rows) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="at least five"):
        last_five(rows[:4])


def test_paired_seeds_asks_one_commit_and_one_cpu_kind_per_seed():
    def run(cpu, commit="abc1234"):
        return {"commit": commit, "cpu": cpu}

    a = {0: run("AMD EPYC"), 1: run("AMD EPYC"), 2: run("Intel Xeon"), 5: run("Intel Xeon")}
    b = {0: run("AMD EPYC"), 1: run("AMD EPYC"), 2: run("Intel Xeon"), 3: run("AMD EPYC")}
    assert paired_seeds(a, b, "x") == [0, 1, 2]  # seeds of two kinds, each pair on one
    assert paired_seeds(a, {}, "x") == []
    with pytest.raises(ValueError, match=r"A vs B: the two runs of seeds \[1\] ran on different CPU kinds"):
        paired_seeds(a, {**b, 1: run("Intel Xeon")}, "A vs B")
    # one commit for every run of the comparison, paired or not
    with pytest.raises(ValueError, match="more than one code commit"):
        paired_seeds(a, {**b, 3: run("AMD EPYC", commit="def5678")}, "A vs B")
