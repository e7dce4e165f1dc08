"""The relation cost rescaled to the critic cost's spread (``relation_scale="spread"``, claim 4's mask that can matter)."""

import pytest
import torch as th

from otpr_sb3 import OTPR
from tests.otpr_helpers import IdentityEnvBox, fast, identity_demos


def model_with(scale: str, weight: float = 0.5) -> OTPR:
    kwargs = fast(relation_weight=weight, policy_kwargs={"guidance_kwargs": {"relation_scale": scale}})
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=100), **kwargs, seed=0)
    model.pretrain(identity_demos(), n_steps=20)
    model.learn(40)
    return model


def test_spread_makes_the_relation_cost_as_spread_as_the_critic_cost():
    model = model_with("spread")
    g = model.policy.guidance
    assert float(g.relation_spread) > 0, "the dual updates measure the spread"
    gen = th.Generator().manual_seed(3)
    ctx = model._update_context()
    x, y = ctx.sample_states(64, gen), ctx.sample_actions(64, gen)
    g.relation_spread.zero_()  # measure afresh on exactly these pairs
    g.update_relation_spread(x, y)
    rel = g.relation_cost().pairwise(x, y) / g.relation_spread
    crit = g.dual_cost.critic_pairwise(x, y)
    th.testing.assert_close(rel.std(), crit.std(), rtol=1e-4, atol=0)
    # The mixed cost is (1 - w) c_Q + w c_rel / spread, term by term.
    w = g.relation_weight
    th.testing.assert_close(g.dual_cost.pairwise(x, y), (1 - w) * crit + w * rel, rtol=1e-5, atol=1e-5)


def test_spread_is_an_ema_after_the_first_measurement_and_restarts_with_new_keypoints():
    model = model_with("spread")
    g = model.policy.guidance
    gen = th.Generator().manual_seed(5)
    ctx = model._update_context()
    x, y = ctx.sample_states(32, gen), ctx.sample_actions(32, gen)
    before = g.relation_spread.clone()
    g.update_relation_spread(x, y, rate=0.25)
    fresh = g.relation_cost().pairwise(x, y).std() / g.dual_cost.critic_pairwise(x, y).std()
    th.testing.assert_close(g.relation_spread, before + 0.25 * (fresh - before), rtol=1e-5, atol=0)
    model._set_keypoints()
    assert float(g.relation_spread) == 0.0


def test_none_leaves_the_paper_cost_unchanged():
    model = model_with("none")
    g = model.policy.guidance
    gen = th.Generator().manual_seed(3)
    ctx = model._update_context()
    x, y = ctx.sample_states(16, gen), ctx.sample_actions(16, gen)
    w = g.relation_weight
    expected = (1 - w) * g.dual_cost.critic_pairwise(x, y) + w * g.relation_cost().pairwise(x, y)
    th.testing.assert_close(g.dual_cost.pairwise(x, y), expected)


def test_spread_round_trips_and_is_a_saved_setting(tmp_path):
    model = model_with("spread")
    model.save(tmp_path / "m")
    loaded = OTPR.load(tmp_path / "m", env=IdentityEnvBox(ep_length=100))
    assert loaded.policy.guidance.relation_scale == "spread"
    th.testing.assert_close(loaded.policy.guidance.relation_spread, model.policy.guidance.relation_spread)


def test_unknown_relation_scale_is_refused():
    with pytest.raises(ValueError, match="relation_scale"):
        OTPR("MlpPolicy", IdentityEnvBox(), **fast(policy_kwargs={"guidance_kwargs": {"relation_scale": "unit"}}))
