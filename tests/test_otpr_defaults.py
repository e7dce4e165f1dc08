"""The defaults a user gets: settings that follow the actor's regime, demonstrations in replay, the empty-replay guard."""

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest
import torch as th
from otpr_helpers import FAST, SMALL, IdentityEnvBox, identity_demos

from otpr_sb3 import OTPR
from otpr_sb3.otpr import DEFAULT_SETTINGS

GRID = np.linspace(-0.9, 0.9, 41, dtype=np.float32)[:, None]


def settings(model: OTPR) -> dict:
    return {
        "reg": model.reg,
        "method": model.dual_kwargs["method"],
        "reference_actions": model.dual_kwargs["reference_actions"],
        "n_candidates": model.policy.n_candidates,
        "actor_learning_rate": model.policy.actor.optimizer.param_groups[0]["lr"],
    }


def test_defaults_follow_the_regime():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **FAST)
    assert model.regime == "from-scratch" and settings(model) == DEFAULT_SETTINGS["from-scratch"]
    assert model.actor_targets_in_use == "candidates"
    assert model.policy.guidance.reg == pytest.approx(0.05) and model.policy.guidance.trainer.solver.reg == 0.05
    model.pretrain(identity_demos(), n_steps=5)
    assert model.regime == "fine-tuning" and settings(model) == DEFAULT_SETTINGS["fine-tuning"]
    assert model.actor_targets_in_use == "replay" and model.policy.guidance.trainer.solver.method == "semi-dual"
    assert model.policy.guidance.reg == 0.5 == model.policy.guidance.trainer.solver.reg


def test_explicit_settings_are_kept_in_both_regimes(tmp_path):
    kwargs = {**FAST, "policy_kwargs": {**SMALL, "n_candidates": 4}}
    kwargs["dual_kwargs"] = {**kwargs["dual_kwargs"], "method": "exact"}
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), reg=0.2, seed=0, **kwargs)
    assert (model.reg, model.dual_kwargs["method"], model.policy.n_candidates) == (0.2, "exact", 4)
    assert model.dual_kwargs["reference_actions"] == 0 and model.policy.actor.optimizer.param_groups[0]["lr"] == 3e-4
    model.pretrain(identity_demos(), n_steps=5)
    assert (model.reg, model.dual_kwargs["method"], model.policy.n_candidates) == (0.2, "exact", 4)
    assert model.dual_kwargs["reference_actions"] == 48 and model.policy.actor.optimizer.param_groups[0]["lr"] == 1e-4
    # Saved and loaded: the resolved values, and the policy rebuilt with them.
    model.save(tmp_path / "m")
    loaded = OTPR.load(tmp_path / "m", env=IdentityEnvBox(ep_length=20))
    assert settings(loaded) == settings(model) and loaded.default_settings == model.default_settings
    # An override at load time is the user's value: the regime does not reset it when learn starts.
    overridden = OTPR.load(tmp_path / "m", env=IdentityEnvBox(ep_length=20), dual_kwargs={"reference_actions": 8})
    with pytest.warns(UserWarning, match="replay buffer is empty"):  # loaded without its replay buffer
        overridden.learn(20)
    assert overridden.dual_kwargs["reference_actions"] == 8 and "reference_actions" not in overridden.default_settings
    assert overridden.dual_kwargs["batch_size"] == model.dual_kwargs["batch_size"]  # the other keys: the saved ones


def _snapshot(model: OTPR) -> list[th.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


@pytest.mark.parametrize("pretrain", [False, True])
def test_defaults_equal_their_explicit_values(pretrain):
    """A model left at the defaults trains exactly as one given the regime's values explicitly."""
    regime = DEFAULT_SETTINGS["fine-tuning" if pretrain else "from-scratch"]
    dual = {**FAST["dual_kwargs"], "method": regime["method"], "reference_actions": regime["reference_actions"]}
    explicit = {"reg": regime["reg"], "dual_kwargs": dual}
    policy_explicit = {**SMALL, "n_candidates": regime["n_candidates"], "actor_learning_rate": regime["actor_learning_rate"]}
    runs = []
    for kwargs, policy_kwargs in (({}, SMALL), (explicit, policy_explicit)):
        given = {**FAST, "policy_kwargs": policy_kwargs, **kwargs}
        model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=3, **given)
        if pretrain:
            model.pretrain(identity_demos(), n_steps=20)
        model.learn(60)
        runs.append(_snapshot(model))
    assert all(th.equal(a, b) for a, b in zip(*runs, strict=True))


def test_learn_warns_once_when_fine_tuning_on_an_empty_replay_buffer():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **FAST)
    model.pretrain(identity_demos(), n_steps=5, add_to_replay_buffer=False)
    with pytest.warns(UserWarning, match="add_to_replay_buffer=True"):
        model.learn(20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(20, reset_num_timesteps=False)  # said once
        default = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **FAST)
        default.pretrain(identity_demos(), n_steps=5)  # demonstrations in replay: nothing to say
        default.learn(20)
        scratch = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **FAST)
        scratch.learn(20)  # never pretrained: nothing to say either


def _error(model: OTPR) -> float:
    actions, _ = model.predict(GRID, deterministic=True)
    return float(np.abs(actions - GRID).mean())


@pytest.mark.slow
def test_fine_tuning_with_defaults_keeps_what_bc_learned():
    """``pretrain(demos)`` then ``learn`` with defaults: the deterministic policy is no worse than BC.

    With the demonstrations left out of the replay buffer (the default before 2026-12), the actor is fitted to its
    own exploration and drifts: on this seed its error grows from BC's 0.092 to about 0.11 in 1,000 steps, while the
    default path improves to about 0.08 (measured on 5 seeds: the default ends lower than the opt-out on each).
    """
    errors = {}
    for add in (True, False):
        model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, policy_kwargs=SMALL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.pretrain(identity_demos(400, noise=0.3), n_steps=1000, add_to_replay_buffer=add)
            bc = _error(model)
            model.learn(1000)
        errors[add] = (bc, _error(model))
    (bc, tuned), (_, drifted) = errors[True], errors[False]
    assert tuned <= bc
    assert drifted > tuned  # the opt-out path drifts: this test fails on the old default


ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_plain_api_table_is_generated_from_the_committed_records():
    spec = importlib.util.spec_from_file_location("plain_api_fetch", ROOT / "examples" / "plain_api_fetch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = ROOT / "results" / "plain_api" / "FetchPickAndPlace"
    harness = ROOT / "results" / "fetch" / "runs" / "FetchPickAndPlace" / "otpr"
    assert module.report(str(records), str(harness)) == (ROOT / "docs" / "defaults_plain_api.inc").read_text()


def test_plain_api_records_never_fall_below_bc():
    """The sentence under the plain-API table of docs/defaults.rst, checked against the committed records."""
    runs = sorted((ROOT / "results" / "plain_api" / "FetchPickAndPlace").glob("s*/evaluations.csv"))
    assert runs
    for path in runs:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        bc = rows[rows[:, 0] == 0, 1]
        assert len(bc) == 1 and (rows[rows[:, 0] > 0, 1] >= bc[0]).all(), path


def test_from_scratch_records_of_untuned_seeds():
    """The sentences under the from-scratch table of docs/defaults.rst, checked against the committed curves."""
    data = ROOT / "docs" / "data" / "from_scratch"

    def final(path):
        return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)[-1, 1]

    tuned = [final(p) for p in data.glob("*-otpr_candidates-s*/curve.csv")]
    assert len(tuned) == 3 and round(min(tuned)) == -154 and round(max(tuned)) == -147
    runs = sorted(p.parent for p in data.glob("*-otpr_library-s*/summary.json"))
    assert [r.name[-3:] for r in runs] == ["s10", "s11", "s12", "s13", "s14"]
    curves = [np.loadtxt(r / "curve.csv", delimiter=",", skiprows=1, ndmin=2) for r in runs]
    assert all(c[-1, 0] == 20_000 for c in curves)
    first = [int(c[np.argmax(c[:, 1] >= -300), 0]) for c in curves if (c[:, 1] >= -300).any()]
    assert len(first) == 5 and (min(first), max(first)) == (8_000, 17_000)  # every seed reaches -300, at 8k to 17k
    finals = [c[-1, 1] for c in curves]
    assert sum(f > -300 for f in finals) == 3  # three end above -300, two below
    assert max(finals) < min(tuned)  # every untuned seed ends below every tuning seed
    assert (round(min(finals)), round(max(finals))) == (-374, -162)
    sac = [final(p) for p in data.glob("*-sac-s*/curve.csv")]
    assert min(sac) > max(finals)  # SAC stays ahead
