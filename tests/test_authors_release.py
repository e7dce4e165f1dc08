"""The "authors' release" guidance: the potentials of the relation-cost dual, candidates ranked with -Q, plain loss."""

import pytest
import torch as th

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.methods import get_method
from otpr_sb3.guidance import AuthorsReleaseGuidance
from tests.otpr_helpers import PointGoalEnv, fast, point_goal_demos


def authors_model():
    kwargs = fast(dual_start=2, n_keypoints=4, policy_kwargs={"guidance": "authors", "n_candidates": 10})
    model = OTPR("MultiInputPolicy", PointGoalEnv(), **kwargs, seed=0)
    model.pretrain(point_goal_demos(), n_steps=20)
    model.learn(40)
    return model


def test_the_dual_is_trained_on_the_relation_cost_alone_and_candidates_are_ranked_with_q():
    model = authors_model()
    g = model.policy.guidance
    assert isinstance(g, AuthorsReleaseGuidance) and g.relation_weight == 1.0 and g.is_ready
    gen = th.Generator().manual_seed(0)
    ctx = model._update_context()
    x, y = ctx.sample_states(8, gen), ctx.sample_actions(8, gen)
    # The dual's cost is the relation cost alone (the critic's weight is 1 - 1 = 0).
    th.testing.assert_close(g.dual_cost.pairwise(x, y), g.relation_cost().pairwise(x, y).to(g.dual_cost.pairwise(x, y).dtype))
    # Candidate scores: u(s) + v(a) - c_Q(s, a), with u from the dual (c-transform under the relation cost).
    cand = y[:6].reshape(2, 3, -1)
    z, w = g.grouped_scores(model.policy, x[:2], cand)
    u = g.state_potential(x[:2])
    c_q = g.dual_cost.critic_grouped(x[:2], cand)
    expected = u[:, None] + g.v(cand.reshape(6, -1)).reshape(2, 3) - c_q
    th.testing.assert_close(z, expected)
    th.testing.assert_close(w, th.relu(expected) / (2 * g.reg))
    # And not with the dual's own cost: the two rankings use different costs.
    assert not th.allclose(c_q, g.dual_cost.grouped(x[:2], cand))


def test_at_relation_weight_one_the_dual_cost_never_evaluates_the_critics(monkeypatch):
    """The critics' weight is 0 there, and on all pairs of a dual batch they were most of its arithmetic."""
    model = authors_model()
    g = model.policy.guidance
    gen = th.Generator().manual_seed(0)
    ctx = model._update_context()
    x, y = ctx.sample_states(8, gen), ctx.sample_actions(8, gen)
    expected = [g.dual_cost.pairwise(x, y), g.dual_cost.grouped(x[:2], y[:6].reshape(2, 3, -1)), g.dual_cost.paired(x, y)]

    def no_critic(*args, **kwargs):
        raise AssertionError("the critics were evaluated at relation weight 1")

    monkeypatch.setattr(model.policy.critic, "pairwise_min", no_critic)
    monkeypatch.setattr(model.policy.critic, "grouped_min", no_critic)
    got = [g.dual_cost.pairwise(x, y), g.dual_cost.grouped(x[:2], y[:6].reshape(2, 3, -1)), g.dual_cost.paired(x, y)]
    for a, b in zip(got, expected):
        th.testing.assert_close(a, b.to(a.dtype))
    # Below weight 1 the critics are in the cost again.
    g.relation_weight = 0.5
    with pytest.raises(AssertionError, match="critics were evaluated"):
        g.dual_cost.pairwise(x, y)


def test_the_actor_loss_is_the_plain_diffusion_loss():
    model = authors_model()
    policy = model.policy
    data = model.replay_buffer.sample(16)
    obs = policy.prepare_obs(data.observations)
    th.manual_seed(1)
    loss, _ = policy.guidance.actor_loss(policy, obs, data.actions, normalize=True)
    th.manual_seed(1)
    plain = policy.schedule.epsilon_loss(policy.actor, data.actions, obs, th.ones(16), normalize=True)
    th.testing.assert_close(loss, plain)


def test_the_harness_method_sets_the_release_settings():
    method = get_method("otpr-authors")
    assert method.policy_kwargs == {"guidance": "authors", "n_candidates": 10}
    assert method.kwargs["dual_kwargs"] == {"learning_rate": 1e-5, "batch_size": 128, "steps": 10}
