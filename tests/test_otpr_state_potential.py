"""u(s) as the c-transform of v over reference actions: what H uses, how it is refreshed, saved and validated."""

import numpy as np
import pytest
import torch as th
from otpr_helpers import IdentityEnvBox, fast, identity_demos

import neural_ot as no
from otpr_sb3 import OTPR


def _model(**kwargs):
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **fast(dual_method="semi-dual", **kwargs))
    model.pretrain(identity_demos(), n_steps=20)
    return model


def test_state_potential_gives_each_state_its_mass_against_the_reference():
    model = _model(reference_actions=12)
    model.learn(80)
    policy = model.policy
    ref, mass = policy.guidance.reference_actions, float(policy.guidance.reference_mass)
    assert ref.shape == (12, 1) and mass == pytest.approx(16 / (16 + 4))  # dual batch 16, 4 keypoints
    obs = th.linspace(-1, 1, 9)[:, None]
    u = policy.guidance.state_potential(obs)
    C = policy.guidance.dual_cost.matrix(obs, ref)
    b = th.full((12,), mass / 12)
    th.testing.assert_close(u, no.c_transform(policy.guidance.v(ref), C, policy.guidance.reg, b=b))
    H = no.density(u, policy.guidance.v(ref), C, policy.guidance.reg)
    th.testing.assert_close(H @ b, th.ones(9), rtol=1e-5, atol=0)  # each state: exactly its mass
    # and it is what H uses: the candidate scores at dual_ready
    assert bool(policy.guidance.ready)
    acts = th.zeros(9, 1)
    z, _ = policy.candidate_scores(obs, acts)
    th.testing.assert_close(z, u + policy.guidance.v(acts) - policy.guidance.pair_cost(obs, acts))


def test_reference_is_redrawn_at_every_dual_update_and_empty_means_the_learned_u():
    model = _model(reference_actions=6)
    model.learn(40)
    first = model.policy.guidance.reference_actions.clone()
    updates = model.dual_updates
    model.learn(20, reset_num_timesteps=False)
    assert model.dual_updates > updates and not th.equal(first, model.policy.guidance.reference_actions)
    plain = _model(reference_actions=0)
    plain.learn(40)
    obs = th.linspace(-1, 1, 5)[:, None]
    assert plain.policy.guidance.reference_actions.shape[0] == 0
    th.testing.assert_close(plain.policy.guidance.state_potential(obs), plain.policy.guidance.u(obs))


def test_reference_state_potential_improves_the_held_out_state_marginal():
    """On the same run, u by c-transform over the reference gives a smaller held-out state-side error than the net."""
    model = _model(reference_actions=64, dual_eval_batch_size=128)
    model.learn(200)
    with_ref = model.dual_diagnostics()
    saved = model.policy.guidance.reference_actions
    model.policy.guidance.set_reference_actions(th.zeros(0, 1))
    learned = model.dual_diagnostics()
    model.policy.guidance.set_reference_actions(saved, float(model.policy.guidance.reference_mass))
    assert with_ref["marginal_error_states"] < learned["marginal_error_states"]
    assert with_ref["marginal_error"] < learned["marginal_error"]


def test_reference_actions_are_saved_with_the_model(tmp_path):
    env = IdentityEnvBox(ep_length=20)
    model = _model(reference_actions=8)
    model.learn(60)
    model.save(tmp_path / "m.zip")
    loaded = OTPR.load(tmp_path / "m.zip", env=env)
    assert loaded.dual_kwargs["reference_actions"] == 8
    assert th.equal(loaded.policy.guidance.reference_actions, model.policy.guidance.reference_actions)
    obs = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    th.testing.assert_close(
        loaded.policy.guidance.state_potential(th.as_tensor(obs)), model.policy.guidance.state_potential(th.as_tensor(obs))
    )


def test_reference_actions_is_validated():
    with pytest.raises(ValueError, match="reference_actions"):
        OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), **fast(reference_actions=-1))


def test_actor_weights_use_the_first_actor_reference_actions(monkeypatch):
    model = _model(reference_actions=12, actor_reference_actions=3)
    model.learn(60)
    policy = model.policy
    obs = th.linspace(-1, 1, 5)[:, None]
    ref = policy.guidance.reference_actions[:3]
    b = th.full((3,), float(policy.guidance.reference_mass) / 3)
    expected = no.c_transform(policy.guidance.v(ref), policy.guidance.dual_cost.matrix(obs, ref), policy.guidance.reg, b=b)
    th.testing.assert_close(policy.guidance.state_potential(obs, n_reference=3), expected)
    seen = []
    original = policy.guidance.weights
    monkeypatch.setattr(policy.guidance, "weights", lambda *a, **k: seen.append(a[-1]) or original(*a, **k))
    model._actor_update()
    assert seen == [3]
    th.testing.assert_close(policy.guidance.state_potential(obs, n_reference=0), policy.guidance.u(obs))  # 0: the learned u


def test_candidate_targets_use_the_actor_reference_actions(monkeypatch):
    model = _model(reference_actions=12, actor_reference_actions=3, actor_targets="candidates", candidate_batch_size=8)
    model.learn(40)
    seen = []
    original = model.policy.resample_candidates
    monkeypatch.setattr(
        model.policy, "resample_candidates", lambda *a, **k: seen.append(k.get("n_reference")) or original(*a, **k)
    )
    model._actor_update()
    assert seen == [3]
