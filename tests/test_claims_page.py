"""docs/claims.rst: its tables are generated from the committed records, and its sentences about them hold."""

import json
import math
import tomllib
from pathlib import Path

import pytest
from otpr_helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "claims"
STALL = "reached, fingers open"  # the failure kind of a deterministic policy stopped at the object


def _module():
    return load_script("examples/claims/claims_tables.py")


def _tables():
    return _module().tables()


def _load(name):
    return json.loads((DATA / name).read_text())


def test_tables_are_the_records():
    tables = _tables()
    assert set(tables) == {
        "claims_dual_accuracy.inc",
        "claims_mask_tv.inc",
        "claims_matched.inc",
        "claims_tuning.inc",
        "claims_candidates_tuning.inc",
        "claims_candidates_first_attempt.inc",
    }
    page = (ROOT / "docs" / "claims.rst").read_text()
    assert ".. include:: claims_candidates_tuning.inc" in page and ".. include:: claims_candidates_first_attempt.inc" in page
    for name, text in tables.items():
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: run examples/claims/claims_tables.py"


def _acc(reg, lever, updates=600, heldout=256):
    rows = [
        r
        for r in _load("dual_accuracy.json")["rows"]
        if (r["reg"], r["lever"], r["updates"], r["heldout"]) == (reg, lever, updates, heldout)
    ]
    assert len(rows) == 1, (reg, lever, updates, heldout)
    return rows[0]


def test_dual_accuracy_sentences():
    rows = _load("dual_accuracy.json")["rows"]
    # ref256 has at most half the default's error after 600 updates, at every reg.
    for reg in {r["reg"] for r in rows}:
        for heldout in (256, 1024):
            if any(
                r["reg"] == reg and r["heldout"] == heldout and r["lever"] == "ref256" and r["updates"] == 600 for r in rows
            ):
                assert (
                    _acc(reg, "ref256", 600, heldout)["marginal_error"]
                    <= 0.5 * _acc(reg, "default", 600, heldout)["marginal_error"]
                )
    for reg in (0.1, 0.05, 0.02):  # exact no better than the default (within 0.01); learned u far worse
        assert _acc(reg, "exact")["marginal_error"] >= _acc(reg, "default")["marginal_error"] - 0.01
        assert _acc(reg, "learned-u")["marginal_error"] > 2 * _acc(reg, "default")["marginal_error"]
    steps4, default = _acc(0.5, "steps4"), _acc(0.5, "default")
    assert (
        steps4["ms_per_update"] > 3 * default["ms_per_update"]
        and abs(steps4["marginal_error"] - default["marginal_error"]) < 0.01
    )
    assert default["marginal_error"] > 0.1 and _acc(0.5, "ref256")["marginal_error"] <= 0.1
    nonzero = lambda reg: [r["h_nonzero_frac_heldout"] for r in rows if r["reg"] == reg and r["lever"] != "learned-u"]  # noqa: E731
    assert all(0.385 <= x < 0.405 for x in nonzero(0.1))
    assert all(0.255 <= x < 0.305 for x in nonzero(0.05))
    assert all(0.155 <= x < 0.175 for x in nonzero(0.02))
    r = _acc(0.1, "ref256")
    assert round(r["marginal_error"], 3) == 0.096 and round(r["dual_gap"], 3) == 0.011
    small = [r for r in rows if r["reg"] == 0.05 and r["heldout"] == 256]
    assert min(r["marginal_error"] for r in small) > 0.1 and round(min(r["marginal_error"] for r in small), 3) == 0.133
    assert round(1 / math.sqrt(256 * 0.27), 2) == 0.12
    r256, r1024 = _acc(0.05, "ref256", 600, 1024), _acc(0.05, "ref1024", 600, 1024)
    assert (round(r256["marginal_error"], 3), round(r256["dual_gap"], 3)) == (0.104, 0.046)
    assert round(r1024["marginal_error"], 3) == 0.101 and abs(r1024["ms_per_update"] - r256["ms_per_update"]) < 2
    assert round(min(r["marginal_error"] for r in rows if r["reg"] == 0.02), 3) == 0.209
    # The choice: at 0.05 (the largest reg with H non-zero on at most 30%), ref256 ties ref1024 within 0.01.
    assert max(nonzero(0.1)) > 0.3 >= max(nonzero(0.05))
    best = min((r for r in rows if r["reg"] == 0.05 and r["heldout"] == 1024), key=lambda r: r["marginal_error"])
    assert r256["marginal_error"] - best["marginal_error"] < 0.01
    assert round(r256["ms_per_update"]) == 27 and round(_acc(0.05, "default", 600, 1024)["ms_per_update"]) == 30


def test_mask_tv_sentences():
    rows = _load("mask_tv.json")["rows"]
    paper = [r for r in rows if r["relation_scale"] == "none"]
    rescaled = [r for r in rows if r["relation_scale"] == "spread"]
    assert max(r["tv"] for r in paper if r["relation_weight"] <= 0.3) <= 0.02
    ratios = {r["keypoints"]: r["relation_spread"] for r in paper}
    assert all(0.01 <= x <= 0.04 for x in ratios.values()) and ratios[16] > ratios[64] > ratios[256]
    at = lambda w: [r["tv"] for r in rescaled if r["relation_weight"] == w]  # noqa: E731
    assert (round(min(at(0.1)), 2), round(max(at(0.1)), 2)) == (0.03, 0.16)
    assert (round(min(at(0.3)), 2), round(max(at(0.3)), 2)) == (0.10, 0.40)
    top = max(rescaled, key=lambda r: r["tv"] if r["relation_weight"] == 0.3 else -1)
    assert (top["keypoints"], top["reg"]) == (16, 0.02)


def test_matched_sentences_and_the_tuning_sweep_uses_the_record():
    m = _load("matched_r0.05.json")
    cand, actor = m["candidates"], m["actor"]
    assert round(cand["entropy_at_T1"]["q"], 2) == round(cand["uniform_entropy"], 2)
    assert actor["temperature"]["q"] > 20 and cand["temperature"]["q"] > 20
    assert actor["entropy_at_T1"]["advantage"] < actor["H_entropy"]
    sweep = tomllib.loads((ROOT / "examples" / "sweeps" / "claims_tuning.toml").read_text())
    temps = {g["methods"][0]: set() for g in sweep["runs"] if g["methods"][0] in ("otpr-q", "otpr-adv")}
    for g in sweep["runs"]:
        if g["methods"][0] in temps:
            temps[g["methods"][0]].add(g["policy_kwargs"]["guidance_kwargs"]["temperature"])
    for method, key in (("otpr-q", "q"), ("otpr-adv", "advantage")):
        assert temps[method] == {float(f"{m[w]['temperature'][key]:.3g}") for w in ("actor", "candidates")}
    h = [g for g in sweep["runs"] if g["methods"][0] == "otpr"]
    assert all(g["kwargs"]["dual_kwargs"] == {"reference_actions": 256} for g in h)
    assert {g["kwargs"]["reg"] for g in h if g["kwargs"].get("use_mask", True)} == {0.05}
    # two configurations per arm, each on seeds 100 and 101
    assert sorted(len(g["seeds"]) for g in sweep["runs"]) == [1] * 20 and {g["seeds"][0] for g in sweep["runs"]} == {100, 101}
    arms = {}
    for g in sweep["runs"]:
        key = (g["methods"][0], g.get("kwargs", {}).get("use_mask", True))
        arms.setdefault(key, set()).add(json.dumps([g.get("kwargs"), g.get("policy_kwargs")], sort_keys=True))
    assert all(len(configs) == 2 for configs in arms.values()), arms  # the same number of configurations per arm


@pytest.mark.parametrize("page", ["claims.rst"])
def test_page_includes_every_table(page):
    text = (ROOT / "docs" / page).read_text()
    for name in ("claims_dual_accuracy.inc", "claims_mask_tv.inc", "claims_matched.inc"):
        assert f".. include:: {name}" in text


def test_tuning_choice_follows_the_protocol():
    m = _module()

    def run(arm, config, seed, last_five, auc):
        return {"arm": arm, "config": config, "seed": seed, "last_five": last_five, "auc": auc}

    runs = [
        run("Q", "temperature 1", 100, 0.5, 0.4),
        run("Q", "temperature 1", 101, 0.7, 0.4),
        run("Q", "temperature 2", 100, 0.6, 0.9),
        run("Q", "temperature 2", 101, 0.6, 0.9),  # a tie on the last five (0.60): the higher AUC is kept
        run("H", "relation weight 0.1", 100, 0.9, 0.9),
        run("H", "relation weight 0.3", 100, 0.1, 0.1),
        run("H", "relation weight 0.3", 101, 0.1, 0.1),  # weight 0.1 lacks seed 101: no choice yet
    ]
    assert m.chosen_configs(runs) == {"Q": "temperature 2"}
    runs[0]["last_five"] = 0.55
    assert m.chosen_configs(runs) == {"Q": "temperature 1"}
    # The arms are read from the records' specs.
    assert m.arm_of({"method": "otpr", "kwargs": {"use_mask": False, "reg": 0.05}, "policy_kwargs": {}}) == (
        "H, unmasked",
        "reg 0.05",
    )
    spec = {"method": "otpr-adv", "kwargs": {}, "policy_kwargs": {"guidance_kwargs": {"temperature": 0.675}}}
    assert m.arm_of(spec) == ("advantage", "temperature 0.675")
    with pytest.raises(ValueError, match="not an arm"):
        m.arm_of({"method": "dql", "kwargs": {}, "policy_kwargs": {}})


def test_report_tables_are_the_records_and_on_the_page():
    module = load_script("examples/claims/claims_verdicts.py")
    tables = module.tables()
    page = (ROOT / "docs" / "claims.rst").read_text()
    for name, text in tables.items():
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: run examples/claims/claims_verdicts.py"
        assert f".. include:: {name}" in page
    assert "claims_verdicts.inc" in tables  # the page includes it: seed 0 pairs H with H, unmasked
    # "every comparison stays pending until it has ten paired seeds"
    verdicts = module.verdicts(module.report_runs())
    assert all((r["decision"].verdict == "pending") == (r["decision"].seeds < 10) for r in verdicts)
    # One commit and CPU for every regime's report runs (the protocol); the verdicts refuse otherwise. Regime (a) ran
    # at 9921064, regime (c) at 8d4c5c5 (the directory-key fix: before it, (c)'s sweep took (a)'s runs for its own).
    where: dict[str, set] = {}
    for r in module.report_runs():
        where.setdefault(r["regime"], set()).add((r["commit"], r["cpu"]))
    assert all(len(w) == 1 for w in where.values())
    expected = {"a": ("9921064", "AMD EPYC"), "c": ("8d4c5c5", "AMD EPYC")}
    assert all(w == {expected[regime]} for regime, w in where.items())


def test_second_wave_report_tables_have_names_of_their_own():
    module = load_script("examples/claims/claims_verdicts.py")
    runs = module.report_runs()  # the first wave's records stand in for the second's: the same tables, other names
    first, second = module.tables_of(runs, None), module.tables_of(runs, None, "claims_candidates")
    assert {name.replace("claims_", "claims_candidates_", 1) for name in first} == set(second)
    assert list(first.values()) == list(second.values())
    assert module.tables_of([], None, "claims_candidates") == {}  # no run yet: nothing for the page to include
    runs_dir, stem = module.WAVES["candidates"]
    assert Path(runs_dir).resolve() == ROOT / "results" / "claims" / "candidates_report" / "runs"
    assert stem == "claims_candidates"
    # Every table of the second wave's finished runs is on the page.
    page = (ROOT / "docs" / "claims.rst").read_text()
    second_runs = module.report_runs(runs_dir)
    for name, text in module.tables_of(second_runs, None, stem).items():
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: run claims_verdicts.py --wave candidates"
        assert f".. include:: {name}" in page
    # One commit for all its runs, one CPU kind for each seed's arms in a regime (the pairs are within a regime:
    # regime (a)'s seed 0 ran on AMD EPYC, regime (c)'s on the Intel Xeon), and "pending until it has ten paired seeds"
    assert {r["commit"] for r in second_runs} <= {"cddd2d9"}
    kinds: dict[tuple[str, int], set] = {}
    for r in second_runs:
        kinds.setdefault((r["regime"], r["seed"]), set()).add(r["cpu"])
    assert all(len(k) == 1 for k in kinds.values()), kinds
    assert all(r["decision"].verdict == "pending" for r in module.verdicts(second_runs) if r["decision"].seeds < 10)
    # "Regime (c) started on 2026-12-07, on the Intel Xeon."
    assert {r["cpu"] for r in second_runs if r["regime"] == "c"} <= {"Intel(R) Xeon(R) Processor"}
    assert "Regime (c) started on 2026-12-07, on the Intel Xeon." in " ".join(page.split())


def test_set_aside_runs_are_the_seeds_that_changed_cpu_kind():
    """ "The three runs of seed 6 that had finished on AMD EPYC (H, H, unmasked and Q) were set aside ... and seed 6
    runs again whole on the new kind": the set-aside runs are those, at the wave's commit, and no report run of seed 6
    is on AMD EPYC."""
    module = load_script("examples/claims/claims_verdicts.py")
    base = ROOT / "results" / "claims" / "candidates_report"
    aside, kept = module.report_runs(str(base / "set_aside")), module.report_runs(str(base / "runs"))
    assert sorted((r["arm"], r["seed"]) for r in aside) == [("H", 6), ("H, unmasked", 6), ("Q", 6)]
    assert {(r["commit"], r["cpu"]) for r in aside} == {("cddd2d9", "AMD EPYC")}
    assert all(r["cpu"] != "AMD EPYC" for r in kept if r["seed"] == 6)
    assert {r["seed"] for r in kept if r["cpu"] == "AMD EPYC"} <= set(range(6))
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "Seeds 0-5 ran on AMD EPYC." in page and "kept in ``results/claims/candidates_report/set_aside``" in page
    # "the mean of the last five evaluations moved by 0.03 (H: 0.47 on AMD EPYC, 0.50 on the Intel Xeon), ..."
    assert {r["regime"] for r in aside} == {"a"}
    rerun = {r["arm"]: r for r in kept if r["seed"] == 6 and r["regime"] == "a"}  # regime (c) has a seed 6 of its own
    parts = []
    for arm in ("H", "H, unmasked", "Q"):
        (before,) = [r["last_five"] for r in aside if r["arm"] == arm]
        after = rerun[arm]["last_five"]
        parts.append((f"{abs(after - before):.2f}", f"{before:.2f}", f"{after:.2f}"))
    (h, hu, q) = parts
    assert (
        f"moved by {h[0]} (*H*: {h[1]} on AMD EPYC, {h[2]} on the Intel Xeon), {hu[0]} (*H, unmasked*: {hu[1]}, "
        f"{hu[2]}) and {q[0]} (*Q*: {q[1]}, {q[2]})" in page
    )


def test_report_curves_are_the_records_on_shared_seeds(tmp_path):
    from otpr_sb3.benchmark.report import panel_curves

    module = load_script("examples/claims/claims_verdicts.py")
    page = (ROOT / "docs" / "claims.rst").read_text()
    assert (
        ".. figure:: _static/claims_report_curves.png" in page
        and (ROOT / "docs" / "_static" / "claims_report_curves.png").exists()
    )
    runs = module.report_runs()
    curves = module.report_curves(runs)
    for regime in {r["regime"] for r in runs}:
        panel, shared = panel_curves(curves, f"regime ({regime})", module.ARMS)
        arms_by_seed = {}
        for r in runs:
            if r["regime"] == regime:
                arms_by_seed.setdefault(r["seed"], set()).add(r["arm"])
        present = set().union(*arms_by_seed.values())  # a regime under way may not have every arm yet
        assert shared == sorted(s for s, arms in arms_by_seed.items() if arms == present)
        for arm in sorted(present):  # the last point of a curve is the mean of the shared seeds' final evaluations
            finals = [r["final"] for r in runs if r["regime"] == regime and r["arm"] == arm and r["seed"] in shared]
            last = panel[(panel["method"] == arm) & (panel["timesteps"] == panel["timesteps"].max())]["success"]
            assert math.isclose(last.mean(), sum(finals) / len(finals))
    assert module.curves_figure(runs, path=str(tmp_path / "curves.png")) and (tmp_path / "curves.png").stat().st_size > 0


def test_live_diagnostics_sentences():
    module = load_script("examples/claims/claims_verdicts.py")
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert ".. include:: claims_live.inc" in page
    live = {r["arm"]: r for r in module.live_diagnostics(module.report_runs()) if r["regime"] == "a"}
    h, unmasked = live["H"], live["H, unmasked"]
    # "H's held-out marginal error is above 0.1 while its dual gap is within 5%; unmasked H misses both"
    assert "H's held-out marginal error is above 0.1 while its dual gap is within 5%; unmasked H misses both" in page
    assert h["marginal_error"] > 0.1 and h["dual_gap"] <= 0.05
    assert unmasked["marginal_error"] > 0.1 and unmasked["dual_gap"] > 0.05
    # "The advantage weights are less selective than H's (closer to uniform) and the Q weights far more."
    assert h["weight_entropy"] < live["advantage"]["weight_entropy"] < math.log(256)
    assert live["Q"]["weight_entropy"] < h["weight_entropy"] - 0.5
    # the verdicts: "during the runs the advantage weights were less selective than H's ..., so H did not lose to a
    # sharper weighting"
    assert "during the runs the advantage weights were less selective than H's" in page
    # "The authors' release weights every pair alike"
    assert live["authors' release"]["weight_entropy"] == pytest.approx(math.log(256), abs=1e-3)
    assert live["authors' release"]["h_nonzero_frac"] == 1.0


def test_tuning_runs_are_one_commit_and_the_sweep_file():
    runs = _module().tuning_runs()
    # Every arm's tuning runs on one code commit: 02a25da, the authors' arm (its code came later) on df13a12.
    for r in runs:
        assert r["commit"] == ("df13a12" if r["arm"] == "authors' release" else "02a25da"), r
    sweep = tomllib.loads((ROOT / "examples" / "sweeps" / "claims_tuning.toml").read_text())
    assert all(r["seed"] in (100, 101) for r in runs) and len(runs) <= len(sweep["runs"])


def test_tuning_sentences():
    runs = _module().tuning_runs()

    def of(arm, config, seed=100):
        return next(r for r in runs if (r["arm"], r["config"], r["seed"]) == (arm, config, seed))

    # Candidate-matched temperatures collapse (Q 65.4, advantage 3.9); actor-matched advantage is the best so far.
    for arm, config in (("Q", "temperature 65.4"), ("advantage", "temperature 3.9"), ("Q", "temperature 21.7")):
        assert of(arm, config)["final"] <= 0.05
    # The authors' release keeps reg 0.05: "(0.60, against 0.52 at 0.5)"
    chosen = _module().chosen_configs(runs)
    assert chosen["authors' release"] == "reg 0.05" and len(chosen) == 5
    means = {
        c: round(sum(r["last_five"] for r in runs if (r["arm"], r["config"]) == ("authors' release", c)) / 2, 2)
        for c in ("reg 0.05", "reg 0.5")
    }
    assert means == {"reg 0.05": 0.60, "reg 0.5": 0.52}
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "the authors' release at reg 0.05 (0.60, against 0.52 at 0.5)" in text
    assert len(runs) == 20 and "all 20 are collected" in text
    best = of("advantage", "temperature 0.675")
    assert best["final"] == 0.97 and best["final"] == max(r["final"] for r in runs if r["seed"] == 100)


def test_report_sweep_is_valid_and_runs_the_kept_settings():
    from otpr_sb3.benchmark.sweep import SweepConfig

    module = load_script("examples/claims/report_sweep.py")
    settings = {
        "H": {"method": "otpr", "kwargs": {"reg": 0.05, "relation_weight": 0.1}, "policy_kwargs": {}},
        "H, unmasked": {"method": "otpr", "kwargs": {"use_mask": False, "reg": 0.05}, "policy_kwargs": {}},
        "Q": {"method": "otpr-q", "kwargs": {}, "policy_kwargs": {"guidance_kwargs": {"temperature": 21.7}}},
        "advantage": {"method": "otpr-adv", "kwargs": {}, "policy_kwargs": {"guidance_kwargs": {"temperature": 0.675}}},
        "authors' release": {"method": "otpr-authors", "kwargs": {"reg": 0.5}, "policy_kwargs": {}},
    }
    regimes = ("a", "b", "c", "d")
    by_regime = {g: SweepConfig.from_dict(tomllib.loads(module.sweep_text(settings, g))).runs for g in regimes}
    datasets = {g: {r.get("dataset") for r in runs} for g, runs in by_regime.items()}
    assert datasets == {"a": {None}, "b": {module.FEW}, "c": {module.MIXED}, "d": {module.MULTIMODAL}}
    runs = [r for g in regimes for r in by_regime[g]]
    assert len(runs) == 5 * 4 * 10 and {r["seed"] for r in runs} == set(range(10))
    with pytest.raises(ValueError, match="regime"):
        module.sweep_text(settings, "e")
    # Every regime's file is the committed one's arms (the same settings for every regime)
    for g in regimes:
        committed = SweepConfig.from_toml(str(ROOT / "examples" / "sweeps" / f"claims_report_{g}.toml")).runs
        assert len(committed) == 50 and {r.get("dataset") for r in committed} == datasets[g]
    h = [r for r in runs if r["method"] == "otpr" and r["kwargs"].get("relation_weight") == 0.1]
    assert len(h) == 40 and all(r["kwargs"]["reg"] == 0.05 for r in h)
    q = [r for r in runs if r["method"] == "otpr-q"]
    assert all(r["policy_kwargs"] == {"guidance_kwargs": {"temperature": 21.7}} for r in q)


def test_candidates_wave_report_sweep_keeps_the_candidate_targets_in_regimes_a_and_c():
    from otpr_sb3.benchmark.sweep import SweepConfig

    module = load_script("examples/claims/report_sweep.py")
    targets = {"actor_targets": "candidates"}
    settings = {
        "H": {"method": "otpr", "kwargs": {**targets, "reg": 0.05, "relation_weight": 0.3}, "policy_kwargs": {}},
        "Q": {"method": "otpr-q", "kwargs": targets, "policy_kwargs": {"guidance_kwargs": {"temperature": 65.4}}},
    }
    by_regime = {g: SweepConfig.from_dict(tomllib.loads(module.sweep_text(settings, g, "candidates"))) for g in "ac"}
    for g, config in by_regime.items():
        assert config.name == f"claims-candidates-report-{g}" and "claims_candidates_report" in config.runs_dir
        assert len(config.runs) == 2 * 10 and all(r["kwargs"]["actor_targets"] == "candidates" for r in config.runs)
        assert {r.get("dataset") for r in config.runs} == {None if g == "a" else module.MIXED}
    assert "Not yet in" in module.sweep_text(settings, "a", "candidates")  # the arms without a kept configuration
    with pytest.raises(ValueError, match="regime must be one of \\['a', 'c'\\] for the candidates wave"):
        module.sweep_text(settings, "b", "candidates")
    with pytest.raises(ValueError, match="wave must be one of"):
        module.sweep_text(settings, "a", "third")


def test_the_second_wave_report_sweeps_are_its_tuning_choice():
    """The committed sweeps of the second wave's report are what report_sweep.py writes from its 20 tuning records."""
    module = load_script("examples/claims/report_sweep.py")
    tables = load_script("examples/claims/claims_tables.py")
    runs = tables.tuning_runs(tables.CANDIDATES_TUNING)
    assert len(runs) == 20 and sorted({r["seed"] for r in runs}) == [100, 101]
    kept = module.kept_settings(runs_dir=tables.CANDIDATES_TUNING)  # refuses while an arm has no kept configuration
    assert set(kept) == set(tables.ARMS) and all(s["kwargs"]["actor_targets"] == "candidates" for s in kept.values())
    for regime in ("a", "c"):
        committed = (ROOT / "examples" / "sweeps" / f"claims_candidates_report_{regime}.toml").read_text()
        assert committed == module.sweep_text(kept, regime, "candidates"), "run report_sweep.py --wave candidates"
        assert "Not yet in" not in committed


def test_second_wave_kept_configurations_and_report_sentences():
    module = _module()
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())

    def means(runs_dir):
        runs = module.tuning_runs(runs_dir)
        configs = {(r["arm"], r["config"]) for r in runs}
        return {key: sum(r["last_five"] for r in runs if (r["arm"], r["config"]) == key) / 2 for key in configs}

    second, first = means(module.CANDIDATES_TUNING), means(module.TUNING)
    kept2 = module.chosen_configs(module.tuning_runs(module.CANDIDATES_TUNING))
    kept1 = module.chosen_configs(module.tuning_runs(module.TUNING))
    other = {
        "H": "relation weight 0.3",
        "H, unmasked": "reg 0.05",
        "Q": "temperature 65.4",
        "advantage": "temperature 3.9",
        "authors' release": "reg 0.05",
    }
    assert kept2 == {
        "H": "relation weight 0.1",
        "H, unmasked": "reg 0.025",
        "Q": "temperature 21.7",
        "advantage": "temperature 0.675",
        "authors' release": "reg 0.5",
    }
    au = "authors' release"
    m = {arm: (f"{second[(arm, kept2[arm])]:.2f}", f"{second[(arm, other[arm])]:.2f}") for arm in kept2}
    assert (
        f"keeps H at relation weight 0.1 ({m['H'][0]}, against {m['H'][1]} at 0.3), H unmasked at reg 0.025 "
        f"({m['H, unmasked'][0]}, against {m['H, unmasked'][1]} at 0.05), Q at temperature 21.7 ({m['Q'][0]}, against "
        f"{m['Q'][1]} at 65.4), the advantage weights at 0.675 ({m['advantage'][0]}, against {m['advantage'][1]} at "
        f"3.9) and the authors' release at reg 0.5 ({m[au][0]}, against {m[au][1]} at 0.05)"
    ) in text
    f = {arm: f"{first[(arm, kept1[arm])]:.2f}" for arm in kept1}
    assert (
        f"candidate targets lower H ({m['H'][0]} against {f['H']}), H unmasked ({m['H, unmasked'][0]} against "
        f"{f['H, unmasked']}) and the authors' release ({m[au][0]} against {f[au]}), "
        f"and lift Q ({m['Q'][0]} against {f['Q']}) and the advantage weights ({m['advantage'][0]} against {f['advantage']})"
    ) in text
    lower = ("H", "H, unmasked", "authors' release")
    assert all(second[(a, kept2[a])] < first[(a, kept1[a])] for a in lower)
    assert all(second[(a, kept2[a])] > first[(a, kept1[a])] for a in ("Q", "advantage"))
    # The report's price, from the tuning runs' wall-clock, and its state, from its records
    wall = [
        json.loads(p.read_text())["wall_time"]
        for p in (ROOT / "results" / "claims" / "candidates_ready_tuning" / "runs").glob("*/*/s*/summary.json")
    ]
    hours = sum(wall) / 3600
    assert f"took {hours:.1f} slot-hours (wall-clock); at that rate its 100 report runs take about {5 * hours:.0f}" in text
    report = list((ROOT / "results" / "claims" / "candidates_report" / "runs").glob("*/*/s*/summary.json"))
    assert ("No report run of the second wave has finished yet" in text) == (not report)
    assert "All 100 runs come from one commit, ``cddd2d9``" in text
    assert (
        'claims-candidates-a) echo "cddd2d9 examples/sweeps/claims_candidates_report_a.toml'
        in (ROOT / "scripts" / "studies.sh").read_text()
    )


def test_regime_c_sentence():
    (spec_path,) = (ROOT / "results" / "claims" / "regime_c_bc").glob("*/bc/s100/spec.json")
    spec = json.loads(spec_path.read_text())
    rows = (spec_path.parent / "evaluations.csv").read_text().splitlines()
    assert rows[1].split(",")[1:3] == ["0.04", "50"]
    assert [(p["episodes"], p["noise"], p["success_rate"]) for p in spec["card"]["parts"]] == [(50, 0.1, 1.0), (50, 1.0, 0.06)]
    starts = {
        (ROOT / p).read_text().splitlines()[1].split(",")[1]
        for p in (ROOT / "results" / "claims" / "tuning" / "runs").glob("*/*/s100/evaluations.csv")
    }
    assert starts == {"0.34"}
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "reaches 0.04 on tuning seed 100" in text and "succeeds in 0.06 of its episodes" in text


def test_the_second_wave_is_the_first_with_candidate_targets():
    from otpr_sb3.benchmark.sweep import SweepConfig

    sweeps = ROOT / "examples" / "sweeps"
    first = SweepConfig.from_toml(str(sweeps / "claims_tuning.toml")).runs
    second = SweepConfig.from_toml(str(sweeps / "claims_candidates_tuning.toml")).runs
    assert len(first) == len(second) == 20
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "``examples/sweeps/claims_candidates_tuning.toml``, 20 runs, the first wave's with that one change) runs" in page
    # Candidate targets only in the second wave's runs, and every one of them has them
    claims = ROOT / "results" / "claims"
    # the first attempt, the wave's tuning, its report
    waves = {"candidates_tuning": "194799c", "candidates_ready_tuning": "8f2cf00", "candidates_report": "cddd2d9"}
    specs = [json.loads(p.read_text()) for p in claims.glob("**/spec.json") if not set(waves) & set(p.parts)]
    assert len(specs) > 100 and not any(s.get("kwargs", {}).get("actor_targets") == "candidates" for s in specs)
    for folder, commit in waves.items():
        second_specs = [json.loads(p.read_text()) for p in (claims / folder / "runs").glob("*/*/s*/spec.json")]
        assert second_specs or folder != "candidates_tuning"  # the wave's runs come as they finish
        assert all(s["kwargs"]["actor_targets"] == "candidates" for s in second_specs)
        assert {s["provenance"]["commit"][:7] for s in second_specs} <= {commit}
        assert folder == "candidates_report" or {s["provenance"]["cpu"] for s in second_specs} <= {"AMD EPYC"}
    assert "The wave first ran at commit ``194799c``" in page and "run at ``8f2cf00`` on AMD EPYC" in page
    assert "bash scripts/studies.sh run claims-candidates-ready-tuning" in page.replace("`` bash", "``bash")
    for a, b in zip(first, second):
        kwargs = dict(b.get("kwargs", {}))
        assert kwargs.pop("actor_targets") == "candidates"
        assert (kwargs, b.get("policy_kwargs"), b["method"], b["seed"]) == (
            a.get("kwargs", {}),
            a.get("policy_kwargs"),
            a["method"],
            a["seed"],
        )


def test_the_first_attempt_of_the_second_wave_collapsed_in_the_warm_up():
    """The sentences on the stopped attempt: every run at 0.05 at 1,000 and 2,000 steps, the first wave well above."""
    module = _module()

    def curves(folder: str) -> dict[tuple[str, str], dict[int, float]]:
        out = {}
        for path in (ROOT / "results" / "claims" / folder / "runs").glob("*/*/s100/evaluations.csv"):
            spec = json.loads((path.parent / "spec.json").read_text())
            rows = path.read_text().splitlines()[1:]
            out[module.arm_of(spec)] = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows}
        return out

    attempt, first = curves("candidates_tuning"), curves("tuning")
    assert len(attempt) == 9 and len({arm for arm, _ in attempt}) == 5  # every arm
    assert {c[0] for c in attempt.values()} == {0.34} and {c[1000] for c in attempt.values()} == {0.05}
    assert {c[2000] for c in attempt.values()} == {0.05}
    assert min(c[1000] for c in first.values()) == 0.25 and max(c[1000] for c in first.values()) == 0.45
    assert min(c[2000] for c in first.values()) == 0.25 and max(c[2000] for c in first.values()) == 0.65
    q, adv = attempt[("Q", "temperature 21.7")], attempt[("advantage", "temperature 0.675")]
    assert (min(q[t] for t in range(3000, 10000, 1000)), max(q[t] for t in range(3000, 10000, 1000))) == (0.8, 1.0)
    assert (min(adv[t] for t in range(4000, 10001, 1000)), max(adv[t] for t in range(4000, 10001, 1000))) == (0.8, 0.9)
    stayed_up = [k for k, c in attempt.items() if min(c[t] for t in range(4000, 10000, 1000)) >= 0.8]
    assert sorted(stayed_up) == [("Q", "temperature 21.7"), ("advantage", "temperature 0.675")]
    assert q[10000] == 0.67
    h_runs = [c for (arm, _), c in attempt.items() if arm.startswith("H")]
    assert len(h_runs) == 4 and max(v for c in h_runs for t, v in c.items() if t > 2000) == 0.5
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    for sentence in (
        "In each of the 9 runs that finished (seed 100, every arm, the authors' included), success fell from 0.34",
        "to 0.05 at 1,000 and at 2,000 steps",
        "stood at 0.25-0.45 and 0.25-0.65",
        "Q at temperature 21.7 (0.80-1.00 from 3,000 to 9,000 steps, 0.67 at the final evaluation)",
        "the advantage weights at temperature 0.675 (0.80-0.90 from 4,000 steps on); no run of an H arm rose above 0.50",
    ):
        assert sentence in text, sentence


def test_the_q_arm_collapses_on_both_seeds():
    runs = [r for r in _module().tuning_runs() if r["arm"] == "Q"]
    assert sorted((r["config"], r["seed"]) for r in runs) == [
        ("temperature 21.7", 100),
        ("temperature 21.7", 101),
        ("temperature 65.4", 100),
        ("temperature 65.4", 101),
    ]
    assert max(r["final"] for r in runs) == 0.03
    assert _module().chosen_configs(_module().tuning_runs())["Q"] == "temperature 21.7"
    assert "final at most 0.03" in " ".join((ROOT / "docs" / "claims.rst").read_text().split())


def test_kept_configurations_sentence():
    m = _module()
    runs = m.tuning_runs()

    def mean(arm, config):
        xs = [r["last_five"] for r in runs if (r["arm"], r["config"]) == (arm, config)]
        assert len(xs) == 2
        return round(sum(xs) / 2, 2)

    assert (mean("H", "relation weight 0.1"), mean("H", "relation weight 0.3")) == (0.70, 0.47)
    assert (mean("H, unmasked", "reg 0.05"), mean("H, unmasked", "reg 0.025")) == (0.85, 0.71)
    assert (mean("advantage", "temperature 0.675"), mean("advantage", "temperature 3.9")) == (0.77, 0.03)
    assert (mean("Q", "temperature 21.7"), mean("Q", "temperature 65.4")) == (0.05, 0.04)
    chosen = m.chosen_configs(runs)
    assert [chosen[a] for a in ("H", "H, unmasked", "advantage", "Q")] == [
        "relation weight 0.1",
        "reg 0.05",
        "temperature 0.675",
        "temperature 21.7",
    ]
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "H with relation weight 0.1 (0.70, against 0.47 at 0.3), H unmasked at reg 0.05 (0.85, against 0.71" in text


def test_regimes_b_and_d_sentences():
    def bc(regime):
        (spec_path,) = (ROOT / "results" / "claims" / f"regime_{regime}_bc").glob("*/bc/s100/spec.json")
        rows = (spec_path.parent / "evaluations.csv").read_text().splitlines()
        return json.loads(spec_path.read_text()), rows[1].split(",")[1:3]

    spec_b, first_b = bc("b")
    spec_d, first_d = bc("d")
    assert first_b == ["0.16", "50"] and first_d == ["0.08", "50"]
    assert spec_b["card"]["episodes"] == 25 and spec_b["card"]["noise"] == 0.3
    parts = [(p["episodes"], p["noise"], p["expert"], p["success_rate"]) for p in spec_d["card"]["parts"]]
    assert parts == [(50, 0.3, "pick_and_place_from_left", 0.64), (50, 0.3, "pick_and_place_from_right", 0.62)]
    modes = json.loads((ROOT / "docs" / "data" / "claims" / "regime_d_bc_modes.json").read_text())
    assert modes["checkpoint"].startswith(spec_d["dataset"].replace("/", "_")) and "-s100-" in modes["checkpoint"]
    assert (modes["left"], modes["right"], modes["modes"]) == (0.575, 0.425, 2)
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "reaches 0.16 on regime (b)'s 25 demonstrations" in text and "0.08 on regime (d)'s" in text
    assert "succeed in 0.64 and 0.62" in text and "0.575 bend left and 0.425 right" in text


def test_the_status_prices_regimes_a_and_c_from_their_records():
    summaries = list((ROOT / "results" / "claims" / "report" / "runs").glob("*/*/s*/summary.json"))
    wall = [json.loads(p.read_text())["wall_time"] for p in summaries]
    assert len(wall) == 100  # regimes (a) and (c): five arms, ten seeds each
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert f"took {round(sum(wall) / 3600)} slot-hours for their 100 report runs" in text
    assert "(b) and (d) are not run" in text
    for regime in "bd":  # ready to run: the same arms as (a), on their own data
        sweep = tomllib.loads((ROOT / "examples" / "sweeps" / f"claims_report_{regime}.toml").read_text())
        assert len(sweep["runs"]) == 5 and sweep["defaults"]["seeds"] == list(range(10))


def test_step_cost_sentence():
    record = _load("step_cost.json")
    medians = {name: round(rate, 1) for name, rate in record["median_env_steps_per_s"].items()}
    assert medians == {
        "default (reg 0.5, 48 reference actions, masked)": 17.9,
        "H masked, reg 0.05, ref256, spread": 17.8,
        "H unmasked, reg 0.05, ref256": 19.7,
    }
    rates = {}
    for row in record["rows"]:
        rates.setdefault(row["setting"], []).append(row["env_steps_per_s"])
    assert all(max(r) / min(r) <= 1.07 for r in rates.values())  # "the rounds agree within 7%"
    assert record["provenance"]["commit"].startswith("0a0cdcd") and record["args"]["steps"] == 300
    text = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert "median 17.8 env steps/s for H at reg 0.05 with 256 reference actions against 17.9 for the default" in text
    assert "and 19.7 unmasked; the rounds agree within 7%" in text


def test_failure_kinds_are_the_report_runs_and_the_sentences_hold():
    from otpr_sb3.benchmark.failures import CATEGORIES, NO_GRASP_KINDS

    module = load_script("examples/claims/claims_verdicts.py")
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    for name in ("claims_failures.inc", "claims_acting.inc"):
        assert f".. include:: {name}" in page
    record = _load("failure_kinds.json")
    assert record["acting"] == ["deterministic", "sampled"] and record["runs"]
    finals = {(r["regime"], r["arm"], r["seed"]): r["final"] for r in module.report_runs()}
    for r in record["runs"]:
        # "Every deterministic re-evaluation reproduces its run's final evaluation exactly": a committed run's
        det = r["deterministic"]
        assert (
            det["episodes"] == 100
            and det["success"] == finals[(r["regime"], r["arm"], r["seed"])] == r["final_success_of_run"]
        )
        for how in record["acting"]:
            counts = r[how]
            assert round(counts["success"] * 100) + sum(counts[k] for k in CATEGORIES) == 100
            assert counts["no grasp"] == sum(counts[k] for k in NO_GRASP_KINDS)
    assert "Every deterministic re-evaluation reproduces its run's final evaluation exactly" in page
    # The pretrained actor's deterministic success is the start evaluation of every run of its seed.
    starts = {}
    for run in module.report_runs():
        if run["regime"] == "a":
            starts.setdefault(run["seed"], set()).add(run["evaluations"][0]["success"])
    assert record["bc"]
    for b in record["bc"]:
        assert starts[b["seed"]] == {b["deterministic"]["success"]}, b["seed"]
    rows = {(r["arm"], r["acting"]): r for r in module.failure_kinds(module.failure_record()) if r["regime"] == "a"}
    failures = CATEGORIES[1:] + NO_GRASP_KINDS
    # "the commonest failure of every arm but Q is a fixed point: the gripper reaches the object and stays there,
    # fingers open"; "Q's failures never reach the object"
    assert "the commonest failure of every arm but Q is a fixed point" in page
    for arm in ("H", "H, unmasked", "advantage", "authors' release"):
        det = rows[(arm, "deterministic")]
        assert max(failures, key=lambda k: det[k]) == "reached, fingers open", arm
    q = rows[("Q", "deterministic")]
    assert max(failures, key=lambda k: q[k]) == "never reached"
    # "stall at the object far less often in every arm but Q; H's success rises by more than 0.25, unmasked H's and
    # the authors' release's by more than 0.1, while the advantage arm's changes by less than 0.05 and Q stays below 0.1"
    for arm in ("H", "H, unmasked", "advantage", "authors' release"):
        assert rows[(arm, "sampled")]["reached, fingers open"] < 0.5 * rows[(arm, "deterministic")]["reached, fingers open"]
    rise = {arm: rows[(arm, "sampled")]["success"] - rows[(arm, "deterministic")]["success"] for arm in module.ARMS}
    assert rise["H"] > 0.25 and rise["H, unmasked"] > 0.1 and rise["authors' release"] > 0.1 and abs(rise["advantage"]) < 0.05
    assert rows[("Q", "sampled")]["success"] < 0.1
    assert "H's success rises by more than 0.25, unmasked H's and the authors' release's by more than 0.1" in page
    assert "the advantage arm's changes by less than 0.05 and Q stays below 0.1" in page
    # "Under sampled acting, H's mean differences from the advantage arm, from unmasked H and from the authors'
    # release are all within 0.05, and H stays far ahead of Q."
    diffs = {
        (r["comparison"], r["acting"]): r for r in module.acting_differences(module.failure_record()) if r["regime"] == "a"
    }
    for other in ("advantage", "H, unmasked", "authors' release"):
        assert abs(diffs[(f"H - {other}", "sampled")]["mean"]) < 0.05
    assert diffs[("H - Q", "sampled")]["lo"] > 0.5
    assert "are all within 0.05, and H stays far ahead of Q" in page
    # "The stall is there before fine-tuning ... already stalls at the object in most of its failed episodes, and
    # sampled it succeeds far more often. Fine-tuning with the advantage weights removes most of these stalls; with
    # H, most of them stay."
    bc_det, bc_sampled = rows[("BC (start)", "deterministic")], rows[("BC (start)", "sampled")]
    assert bc_det["reached, fingers open"] > 0.5 * sum(bc_det[k] for k in CATEGORIES)
    assert bc_sampled["success"] > bc_det["success"] + 0.2
    assert rows[("advantage", "deterministic")]["reached, fingers open"] < 0.25 * bc_det["reached, fingers open"]
    assert rows[("H", "deterministic")]["reached, fingers open"] > 0.5 * bc_det["reached, fingers open"]
    assert "Fine-tuning with the advantage weights removes most of these stalls; with H, most of them stay" in page


def test_stall_probe_table_and_sentences():
    module = load_script("examples/claims/claims_verdicts.py")
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert ".. include:: claims_stalls.inc" in page
    record = _load("stall_probe.json")
    assert record["args"]["episodes"] == 30 and record["args"]["step"] == 30
    assert (ROOT / "docs" / "claims_stalls.inc").read_text() == module.stall_table()
    rows = record["rows"]
    report = {(r["arm"], r["seed"]) for r in module.report_runs() if r["regime"] == "a"}
    # committed runs (a later collection may add seeds the probe has not seen yet)
    assert {r["seed"] for r in rows} <= {s for arm, s in report if arm == "H" and ("advantage", s) in report}
    assert all(r["stalled"] > 0 for r in rows)
    # "H's own critic prefers closing there on every seed ... yet H's actor keeps the fingers open on every seed,
    # while the advantage actor closes them at the same states on 9 of the 10"
    assert all(r["h_critic_cost"] < 0 for r in rows) and all(r["h_gripper"] > 0 for r in rows)
    assert sum(r["adv_gripper"] < 0 for r in rows) == 9 and len(rows) == 10
    assert "the advantage actor closes them at the same states on 9 of the 10" in page
    # "v(close) - v(open) is negative on every seed and offsets at least half of the cost difference ...
    # (on seed 2, the seed that stalls in all 30 episodes, not at all)"
    assert all(r["h_v"] < 0 and r["h_v"] <= 0.5 * r["h_cost"] for r in rows)
    # "H's score separates closing from opening less than its cost alone does on every seed"
    assert all(abs(r["h_score"]) < abs(r["h_cost"]) for r in rows)
    assert "separates closing from opening less than its cost alone does on every seed" in page
    seed2 = next(r for r in rows if r["seed"] == 2)
    assert seed2["stalled"] == 30 and abs(seed2["h_score"]) < 0.05
    assert "offsets at least half of the cost difference" in page and "stalls in all 30 episodes, not at all" in page
    # "In every seed's replay ... H's critic prefers closing in a larger share of states than the share of replay
    # actions that close"
    assert all(r["critic_prefers_close_share"] > r["replay_closing_share"] for r in rows)
    assert "H's critic prefers closing in a larger share of states than the share of replay actions that close" in page


def test_regime_a_verdict_sentences():
    """The status paragraph, the verdict bullets and the results page read regime (a)'s verdicts right."""
    module = load_script("examples/claims/claims_verdicts.py")
    rows = {(r["comparison"], r["metric"]): r["decision"] for r in module.verdicts(module.report_runs()) if r["regime"] == "a"}
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    results = " ".join((ROOT / "docs" / "results_claims.inc").read_text().split())
    q, adv, mask = ("H - Q", "H - advantage", "H - H, unmasked")
    assert all(rows[(c, m)].seeds == 10 for c in (q, adv, mask) for m in ("last five", "AUC"))
    # "regime (a)'s 50 at commit 9921064"
    regime_a = [r for r in module.report_runs() if r["regime"] == "a"]
    assert len(regime_a) == 50 and {r["commit"][:7] for r in regime_a} == {"9921064"}
    assert "regime (a)'s 50 at commit ``9921064``" in " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    # "claim 3 holds against Q guidance and is reversed against advantage guidance, on both primary metrics"
    assert {rows[(q, m)].verdict for m in ("last five", "AUC")} == {"holds"}
    assert {rows[(adv, m)].verdict for m in ("last five", "AUC")} == {"reversed"}
    assert "claim 3 holds against Q guidance and is reversed against advantage guidance**, on both primary metrics" in page
    # "H ends 0.61 above the Q arm ... and is 0.49 above it in AUC"
    assert (round(rows[(q, "last five")].mean, 2), round(rows[(q, "AUC")].mean, 2)) == (0.61, 0.49)
    assert "H ends 0.61 above the Q arm on the last five evaluations and is 0.49 above it in AUC" in page
    # "the advantage arm ends 0.23 above H ... and is 0.14 above it in AUC, both 95% intervals below zero"
    assert (round(rows[(adv, "last five")].mean, 2), round(rows[(adv, "AUC")].mean, 2)) == (-0.23, -0.14)
    assert all(rows[(adv, m)].ci95[1] < 0 for m in ("last five", "AUC"))
    assert "the advantage arm ends 0.23 above H on the last five evaluations and is 0.14 above it in AUC" in page
    # "claim 4 is undecided, with the mask's point estimate below zero"; "0.10 below ... from -0.24 to +0.01, and 0.02
    # below it in AUC; about 20 and 30 paired seeds would decide"
    last, auc = rows[(mask, "last five")], rows[(mask, "AUC")]
    assert last.verdict == auc.verdict == "undecided" and last.mean < 0 and auc.mean < 0
    assert (round(last.mean, 2), round(last.ci95[0], 2), round(last.ci95[1], 2), round(auc.mean, 2)) == (
        -0.10,
        -0.24,
        0.01,
        -0.02,
    )
    assert (last.seeds_needed, auc.seeds_needed) == (20, 30)
    assert "about 20 and 30 paired seeds would decide the two metrics" in page
    # authors' release: "0.12 above it in AUC, a difference that holds, and 0.03 below it on the last five ...
    # undecided (... about 230 paired seeds ...)"
    rel_auc, rel_last = rows[("H - authors' release", "AUC")], rows[("H - authors' release", "last five")]
    assert (rel_auc.verdict, round(rel_auc.mean, 2), rel_last.verdict, round(rel_last.mean, 2)) == (
        "holds",
        0.12,
        "undecided",
        -0.03,
    )
    assert rel_last.seeds_needed is not None and round(rel_last.seeds_needed, -1) == 230
    assert "H is 0.12 above it in AUC, a difference that holds, and 0.03 below it on the last five" in page
    assert "the claim holds against the Q guidance and is reversed against the advantage guidance" in results
    assert "claim 4 is undecided, with the mask's point estimate below zero" in results
    status = " ".join((ROOT / "docs" / "results_status.inc").read_text().split())
    assert (
        "claim 3 holds against the Q guidance and is reversed against the advantage guidance, and claim 4 is undecided"
        in status
    )


def test_stall_probe_of_the_unmasked_arm_sentence():
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    record, masked = _load("stall_probe_unmasked.json"), _load("stall_probe.json")
    assert record["args"]["arm"] == "H, unmasked" and record["args"]["episodes"] == masked["args"]["episodes"] == 30
    rows = record["rows"]
    assert len(rows) == 10
    # "its critic prefers closing on every seed, its actor keeps the fingers open on every seed, its v offsets at
    # least 33% of the cost difference on every seed and all of it on 3 of the 10, and its replay over-demands
    # closing on every seed"
    assert all(r["h_critic_cost"] < 0 for r in rows) and all(r["h_gripper"] > 0 for r in rows)
    assert all(r["h_v"] < 0 and round(r["h_v"] / r["h_cost"], 2) >= 0.33 for r in rows)
    assert "offsets at least 33% of the cost difference on every seed" in page
    assert sum(r["h_score"] <= 0 for r in rows) == 3
    assert all(r["critic_prefers_close_share"] > r["replay_closing_share"] for r in rows)
    # "stalled at step 30 in 96 of its 300 probed episodes, against 126 for the masked arm"
    assert sum(r["stalled"] for r in rows) == 96 and sum(r["stalled"] for r in masked["rows"]) == 126
    assert "It is stalled at step 30 in 96 of its 300 probed episodes, against 126 for the masked arm" in page
    assert "all of it on 3 of the 10" in page
    # "it gives the 16 keypoints a quarter of the action measure (... reference mass is 0.75), and 2 to 9 of the 16
    # keypoint actions close per seed, a smaller share than the replay's 56-63%"
    m = masked["rows"]
    assert all(r["keypoints"] == 16 and r["reference_mass"] == 0.75 for r in m)
    kp, replay = [r["keypoint_closing_share"] for r in m], [r["replay_closing_share"] for r in m]
    assert (16 * min(kp), 16 * max(kp)) == (2, 9) and (round(100 * min(replay)), round(100 * max(replay))) == (56, 63)
    assert all(k < r for k, r in zip(kp, replay))
    assert "2 to 9 of the 16 keypoint actions close per seed, a smaller share than the replay's 56-63%" in page


def test_readme_guidance_paragraph_is_the_study():
    """README's "Which guidance?" reads regime (a)'s verdicts and the advantage arm's tuned temperature right."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    module = load_script("examples/claims/claims_verdicts.py")
    rows = {(r["comparison"], r["metric"]): r["decision"] for r in module.verdicts(module.report_runs()) if r["regime"] == "a"}
    assert all(rows[("H - Q", m)].verdict == "holds" for m in ("last five", "AUC"))
    assert all(rows[("H - advantage", m)].verdict == "reversed" for m in ("last five", "AUC"))
    assert rows[("H - H, unmasked", "last five")].verdict != "holds"
    assert "`H` beat the Q guidance and lost to the advantage guidance on both primary metrics" in readme
    mask = rows[("H - H, unmasked", "last five")]
    assert (
        mask.verdict == "undecided"
        and mask.mean < 0
        and "the keypoint mask's effect was undecided (its estimate below zero)" in readme
    )
    sweep = tomllib.loads((ROOT / "examples" / "sweeps" / "claims_report_a.toml").read_text())
    adv = [r for r in sweep["runs"] if r["methods"] == ["otpr-adv"]]
    assert adv[0]["policy_kwargs"]["guidance_kwargs"]["temperature"] == 0.675
    assert "guidance_kwargs=dict(temperature=0.675)" in readme


def test_regime_c_verdict_sentences():
    """The status paragraph, "What regime (c) decides", README and the results page read regime (c)'s runs right."""
    module = load_script("examples/claims/claims_verdicts.py")
    runs = [r for r in module.report_runs() if r["regime"] == "c"]
    rows = {(r["comparison"], r["metric"]): r["decision"] for r in module.verdicts(module.report_runs()) if r["regime"] == "c"}
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    assert len(runs) == 50 and {r["commit"][:7] for r in runs} == {"8d4c5c5"}
    assert {(r["arm"], r["seed"]) for r in runs} == {(a, s) for a in module.ARMS for s in range(10)}
    assert "regime (c)'s 50 at ``8d4c5c5``" in page and "all 50 runs at commit ``8d4c5c5``" in page
    q, adv, mask, rel = "H - Q", "H - advantage", "H - H, unmasked", "H - authors' release"
    assert all(rows[(c, m)].seeds == 10 for c in (q, adv, mask, rel) for m in ("last five", "AUC"))
    assert [rows[(q, m)].verdict for m in ("last five", "AUC")] == ["holds", "holds"]
    assert [rows[(adv, m)].verdict for m in ("last five", "AUC")] == ["reversed", "reversed"]
    assert [rows[(mask, m)].verdict for m in ("last five", "AUC")] == ["undecided", "undecided"]
    assert [rows[(rel, m)].verdict for m in ("last five", "AUC")] == ["reversed", "undecided"]
    # the Student-t check: only regime (c)'s H - Q in AUC differs from the protocol's verdict, on the whole page
    every = module.verdicts(module.report_runs())
    differ = [(r["regime"], r["comparison"], r["metric"]) for r in every if r["t"].verdict != r["decision"].verdict]
    assert differ == [("c", q, "AUC")]
    auc, auc_t = rows[(q, "AUC")], {(r["comparison"], r["metric"]): r["t"] for r in every if r["regime"] == "c"}[(q, "AUC")]
    assert f"{auc.ci95[0]:+.3f}" == "+0.009" and auc_t.verdict == "undecided"
    assert (f"{auc_t.ci95[0]:+.3f}", f"{auc_t.ci95[1]:+.3f}") == ("-0.002", "+0.122")
    assert (
        "its 95% bootstrap interval starts at +0.009, and the Student-t interval of the same ten differences, from "
        "-0.002 to +0.122, contains 0" in page
    )
    assert (
        "They agree with the protocol's verdict everywhere in this table but in one place, regime (c)'s H against Q in "
        "AUC" in page
    )
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "(H's win over Q in AUC there only just: the Student-t interval of its ten differences contains 0)" in readme
    assert (
        "In the first wave's regime (c), 50 demonstrations at action noise 0.1 mixed with 50 at noise 1.0, with ten "
        "paired seeds: **claim "
        "3 holds against Q guidance and is reversed against advantage guidance**, on both primary metrics, as in regime "
        "(a), and **claim 4 is undecided**." in page
    )
    by_arm = {a: [r for r in runs if r["arm"] == a] for a in module.ARMS}
    ready = {r["diagnostics"]["dual_ready_step"] for r in runs}
    assert ready == {2200}
    peaks = {a: [max(e["success"] for e in r["evaluations"] if e["timesteps"] < 2200) for r in rs] for a, rs in by_arm.items()}
    collapsing = ("H", "H, unmasked", "Q")
    assert (min(min(peaks[a]) for a in collapsing), max(max(peaks[a]) for a in collapsing)) == (0.55, 1.0)
    finals = {a: sorted(r["final"] for r in rs) for a, rs in by_arm.items()}
    assert (min(finals[a][0] for a in collapsing), max(finals[a][-1] for a in collapsing)) == (0.02, 0.62)
    assert (finals["advantage"][0], finals["advantage"][-1]) == (0.76, 0.95)
    assert (
        "There H (masked or not) and Q collapse once the guidance starts, from 0.55-1.0 success to 0.02-0.62 at the end; "
        "the advantage weights keep the policy at 0.76-0.95" in page
    )
    non_release = [p for a in module.ARMS if a != "authors' release" for p in peaks[a]]
    assert (min(non_release), max(non_release)) == (0.55, 1.0) and max(peaks["authors' release"]) < 0.55
    assert "every arm but the authors' release reaches 0.55-1.0 success in its first 2,200 steps" in page
    # claim 3 vs Q
    assert (round(rows[(q, "last five")].mean, 2), round(rows[(q, "AUC")].mean, 2)) == (0.07, 0.06)
    assert "H ends 0.07 above the Q arm on the last five evaluations and is 0.06 above it in AUC" in page
    kinds = [k for k in json.loads((ROOT / "docs" / "data" / "claims" / "failure_kinds.json").read_text())["runs"]]
    kinds = {a: [k for k in kinds if k["regime"] == "c" and k["arm"] == a] for a in module.ARMS}
    assert all(len(kinds[a]) == 10 for a in module.ARMS)
    q_failed = sum(
        k["deterministic"]["episodes"] - round(k["deterministic"]["success"] * k["deterministic"]["episodes"])
        for k in kinds["Q"]
    )
    q_never = sum(k["deterministic"]["never reached"] for k in kinds["Q"])
    assert (finals["Q"][0], finals["Q"][-1], q_never, q_failed) == (0.02, 0.03, 969, 971)
    assert "The Q arm ends at 0.02-0.03 on every seed, 969 of its 971 failed episodes never reaching the object" in page
    stalls = {a: sorted(k["deterministic"][STALL] for k in kinds[a]) for a in module.ARMS}
    assert (finals["H"][0], finals["H"][-1], stalls["H"][0], stalls["H"][-1]) == (0.03, 0.37, 58, 96)
    assert "H ends at 0.03-0.37, its deterministic policy stalled at the object with open fingers in 58-96 of 100" in page
    # claim 3 vs advantage
    assert (round(rows[(adv, "last five")].mean, 2), round(rows[(adv, "AUC")].mean, 2)) == (-0.79, -0.55)
    assert "the advantage arm ends 0.79 above H on the last five evaluations and is 0.55 above it in AUC" in page
    assert (stalls["advantage"][0], stalls["advantage"][-1]) == (0, 18)
    assert "It ends at 0.76-0.95 and stalls in 0-18 of 100 final episodes" in page
    sampled = {a: [k["sampled"]["success"] for k in kinds[a]] for a in ("H", "advantage")}
    assert [(min(v), max(v), round(sum(v) / len(v), 2)) for v in sampled.values()] == [(0.31, 0.9, 0.66), (0.9, 0.96, 0.93)]
    assert (
        "the final H models succeed in 0.31-0.90 of episodes (mean 0.66), the advantage models in 0.90-0.96 (mean 0.93)"
        in page
    )
    # claim 4
    last, auc = rows[(mask, "last five")], rows[(mask, "AUC")]
    assert (round(last.mean, 2), round(last.ci95[0], 2), round(last.ci95[1], 2), round(auc.mean, 2)) == (
        -0.03,
        -0.12,
        0.05,
        -0.03,
    )
    assert (round(last.seeds_needed, -1), round(auc.seeds_needed, -1)) == (110, 40)
    assert (
        "the masked H ends 0.03 below the unmasked one on the last five evaluations (95% interval from -0.12 to +0.05) "
        "and 0.03 below it in AUC; at this spread about 110 and 40 paired seeds would decide the two metrics" in page
    )
    # authors' release
    r_last, r_auc = rows[(rel, "last five")], rows[(rel, "AUC")]
    assert (round(r_last.mean, 2), round(r_auc.mean, 2), round(r_auc.seeds_needed, -1)) == (-0.35, -0.08, 20)
    assert (stalls["authors' release"][0], stalls["authors' release"][-1]) == (13, 70)
    assert (finals["authors' release"][0], finals["authors' release"][-1]) == (0.23, 0.86)
    assert "H ends 0.35 below it on the last five evaluations, a difference that is reversed, and 0.08 below it" in page
    assert "(it stalls in 13-70 of 100 final episodes and ends at 0.23-0.86)" in page
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`H` ended 0.79 below it on the last five evaluations, its deterministic policy stalled at the object" in readme
    results = " ".join((ROOT / "docs" / "results_claims.inc").read_text().split())
    assert "the advantage guidance ending 0.79 ahead of H on the last five evaluations" in results
    assert "claim 4 is undecided, with the mask's point estimate below zero in both" in results
    assert last.mean < 0


def _undecided_mask_sentence(rows, mask):
    """The claim-4 sentence of a second-wave regime's verdicts (both metrics undecided), from its verdict rows."""
    last, auc = rows[(mask, "last five")]["decision"], rows[(mask, "AUC")]["decision"]
    assert last.verdict == auc.verdict == "undecided"
    return (
        f"H minus H unmasked is {last.mean:+.2f} on the last five evaluations (95% interval {last.ci95[0]:+.2f} to "
        f"{last.ci95[1]:+.2f}) and {auc.mean:+.2f} in AUC ({auc.ci95[0]:+.2f} to {auc.ci95[1]:+.2f}); about "
        f"{last.seeds_needed} and {auc.seeds_needed} paired seeds would decide"
    )


def test_second_wave_regime_a_verdict_sentences():
    """The second wave's regime (a): ten paired seeds, one commit, each seed's arms on one CPU kind, and the status
    paragraph and the bullets under "What the second wave's regime (a) decides" read its verdicts right."""
    module = load_script("examples/claims/claims_verdicts.py")
    runs = module.report_runs(str(ROOT / "results" / "claims" / "candidates_report" / "runs"))
    regime_a = [r for r in runs if r["regime"] == "a"]
    assert len(regime_a) == 50 and {r["commit"][:7] for r in regime_a} == {"cddd2d9"}
    rows = {(r["comparison"], r["metric"]): r for r in module.verdicts(runs) if r["regime"] == "a"}
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    q, adv, mask, authors = ("H - Q", "H - advantage", "H - H, unmasked", "H - authors' release")
    metrics = ("last five", "AUC")
    assert all(rows[(c, m)]["decision"].seeds == 10 for c in (q, adv, mask, authors) for m in metrics)
    # the Student-t intervals give the same verdicts
    assert all(r["decision"].verdict == r["t"].verdict for r in rows.values())
    verdict = {k: r["decision"].verdict for k, r in rows.items()}
    mean = {k: round(r["decision"].mean, 2) for k, r in rows.items()}
    assert {verdict[(c, m)] for c in (q, adv, authors) for m in metrics} == {"reversed"}
    assert (
        "Its regime (a) is decided, on ten paired seeds: with candidate actor targets **claim 3 is reversed against Q "
        "guidance as well as against advantage guidance**, on both primary metrics, H trails the authors' release on "
        "both too, and **claim 4 is undecided**" in page
    )
    assert (mean[(q, "last five")], mean[(q, "AUC")]) == (-0.25, -0.18)
    assert all(rows[(q, m)]["decision"].ci95[1] < 0 for m in metrics)
    assert "H ends 0.25 below the Q arm on the last five evaluations and 0.18 below it in AUC" in page
    assert (mean[(adv, "last five")], mean[(adv, "AUC")]) == (-0.43, -0.30)
    assert "the advantage arm ends 0.43 above H on the last five evaluations and is 0.30 above it in AUC" in page
    assert (mean[(authors, "last five")], mean[(authors, "AUC")]) == (-0.20, -0.09)
    assert "The authors' release ends 0.20 above H on the last five evaluations and is 0.09 above it in AUC" in page
    assert _undecided_mask_sentence(rows, mask) in page
    # "In the first wave, with replay targets, H ended 0.61 above it"
    first_wave = module.verdicts(module.report_runs())
    first = {(r["comparison"], r["metric"]): r["decision"] for r in first_wave if r["regime"] == "a"}
    assert round(first[(q, "last five")].mean, 2) == 0.61
    assert "In the first wave, with replay targets, H ended 0.61 above it" in page
    assert round(first[(adv, "last five")].mean, 2) == -0.23  # "by more than in the first wave"
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        "there `H` trails the Q guidance, the advantage weights and the authors' release on both metrics, and the mask "
        "is undecided; and regime (c) again" in readme
    )
    status = " ".join((ROOT / "docs" / "results_status.inc").read_text().split())
    assert "claim 3 is reversed against the Q guidance too, and claim 4 is undecided" in status
    # seeds 0-5 on AMD EPYC, 6-9 on the Intel Xeon
    kinds = {r["seed"]: r["cpu"] for r in regime_a}
    assert {s for s, c in kinds.items() if c == "AMD EPYC"} == set(range(6))
    assert {s for s, c in kinds.items() if c.startswith("Intel")} == set(range(6, 10))


def test_second_wave_regime_c_verdict_sentences():
    """The second wave's regime (c): ten paired seeds, one commit, all on the Intel Xeon, and the paragraph "What the
    second wave's regime (c) decides" (and the status paragraph, README and results page) read its verdicts right."""
    module = load_script("examples/claims/claims_verdicts.py")
    runs = module.report_runs(str(ROOT / "results" / "claims" / "candidates_report" / "runs"))
    regime_c = [r for r in runs if r["regime"] == "c"]
    assert len(regime_c) == 50 and {r["commit"][:7] for r in regime_c} == {"cddd2d9"}
    assert {r["cpu"] for r in regime_c} == {"Intel(R) Xeon(R) Processor"}
    rows = {(r["comparison"], r["metric"]): r for r in module.verdicts(runs) if r["regime"] == "c"}
    page = " ".join((ROOT / "docs" / "claims.rst").read_text().split())
    q, adv, mask, authors = ("H - Q", "H - advantage", "H - H, unmasked", "H - authors' release")
    metrics = ("last five", "AUC")
    assert all(rows[(c, m)]["decision"].seeds == 10 for c in (q, adv, mask, authors) for m in metrics)
    assert all(r["decision"].verdict == r["t"].verdict for r in rows.values())  # "The Student-t intervals give the same"
    verdict = {k: r["decision"].verdict for k, r in rows.items()}
    mean = {k: r["decision"].mean for k, r in rows.items()}
    assert {verdict[(c, m)] for c in (q, adv) for m in metrics} == {"reversed"}
    assert all(rows[(c, m)]["decision"].ci95[1] < 0 for c in (q, adv) for m in metrics)
    assert (
        f"H ends {-mean[(q, 'last five')]:.2f} below the Q arm on the last five evaluations and {-mean[(q, 'AUC')]:.2f} "
        "below it in AUC, both 95% intervals below zero" in page
    )
    assert (
        f"the advantage arm ends {-mean[(adv, 'last five')]:.2f} above H on the last five evaluations and is "
        f"{-mean[(adv, 'AUC')]:.2f} above it in AUC" in page
    )
    first = {
        (r["comparison"], r["metric"]): r["decision"] for r in module.verdicts(module.report_runs()) if r["regime"] == "c"
    }
    assert f"with replay targets, H ended {first[(q, 'last five')].mean:.2f} above it" in page
    assert f"({-first[(adv, 'last five')].mean:.2f} and {-first[(adv, 'AUC')].mean:.2f} in the first wave)" in page
    assert (
        f"The authors' release ends {-mean[(authors, 'last five')]:.2f} above H on the last five evaluations and is "
        f"{-mean[(authors, 'AUC')]:.2f} above it in AUC" in page
    )
    assert {verdict[(authors, m)] for m in metrics} == {"reversed"}
    assert _undecided_mask_sentence(rows, mask) in page
    assert "its regime (c) is decided too, with the same verdicts" in page
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "and regime (c) again, with the same verdicts" in readme
    status = " ".join((ROOT / "docs" / "results_status.inc").read_text().split())
    assert "its regime (c) on the same day, with the same verdicts" in status
    results = " ".join((ROOT / "docs" / "results_claims.inc").read_text().split())
    assert "reverses claim 3 against the Q guidance as well, in both regimes, on both primary metrics" in results
    second_a = {(r["comparison"], r["metric"]): r["decision"] for r in module.verdicts(runs) if r["regime"] == "a"}
    assert all(second_a[(q, m)].verdict == verdict[(q, m)] == "reversed" for m in metrics)
