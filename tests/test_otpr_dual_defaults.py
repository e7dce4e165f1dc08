"""OTPR's default dual settings solve a fixed synthetic problem within their budget; the paper's are one setting away."""

import inspect

import pytest
import torch as th
from otpr_helpers import FAST, IdentityEnvBox

import neural_ot as no
from otpr_sb3 import OTPR, PAPER_DUAL

DEFAULTS = {k: p.default for k, p in inspect.signature(OTPR.__init__).parameters.items()}
W = th.randn(6, 3, generator=th.Generator().manual_seed(0)) / 2


class _AdvantageLikeCost(no.CostFn):
    """``-(s W a) + |a|^2 / 2``: a smooth state-action cost of about unit spread over all pairs."""

    def pairwise(self, x, y):
        return -(x @ W @ y.T) + 0.5 * (y**2).sum(1)[None, :]

    def paired(self, x, y):
        return -((x @ W) * y).sum(1) + 0.5 * (y**2).sum(1)


def _states(n, gen):
    return th.randn(n, 6, generator=gen)


def _actions(n, gen):
    return 2 * th.rand(n, 3, generator=gen) - 1


def _default_solver(cost):
    return no.L2Dual(
        DEFAULTS["reg"],
        cost=cost,
        hidden_sizes=(128, 128),
        batch_size=DEFAULTS["dual_batch_size"],
        steps_per_batch=DEFAULTS["dual_steps_per_batch"],
        learning_rate=DEFAULTS["dual_learning_rate"],
        method=DEFAULTS["dual_method"],
        seed=0,
    )


def _held_out_errors(solver, cost, n_reference):
    """Held-out marginal errors of the plan; u as OTPR evaluates it (c-transform over fresh reference actions)."""
    reg = DEFAULTS["reg"]
    errors = []
    for seed in range(3):  # held-out batches of 1024: Monte-Carlo floor well below the threshold at this reg
        gen = th.Generator().manual_seed(100 + seed)
        batch = solver.sample_batch(1024, gen)
        u, v = solver.potentials_on(batch)
        if n_reference:
            ref = _actions(n_reference, gen)  # not the held-out actions
            u = no.c_transform(solver.v(ref).detach(), cost.matrix(batch.x, ref), reg)
        T = no.plan(u, v, cost.matrix(batch.x, batch.y), reg, batch.wx, batch.wy)
        errors.append(max(no.relative_marginal_errors(T.sum(1), T.sum(0), batch.wx, batch.wy)))
    return errors


def test_default_dual_reaches_the_marginal_threshold_within_dual_start():
    """As OTPR configures it (method, batch, steps, learning rate, reg, (128, 128) potentials, u from reference
    actions), the dual solves a fixed cost to a held-out marginal error of 0.1 within the `dual_start` updates
    OTPR waits before using H."""
    cost = _AdvantageLikeCost()
    solver = _default_solver(cost)
    solver.setup(_states, _actions)
    for _ in range(DEFAULTS["dual_start"] * DEFAULTS["dual_steps"]):
        solver.step()
    errors = _held_out_errors(solver, cost, DEFAULTS["reference_actions"])
    assert max(errors) <= 0.1, errors


def test_untrained_potentials_are_far_from_the_threshold():
    """The check above can fail: the same measurement on the initial potentials is far above 0.1."""
    cost = _AdvantageLikeCost()
    solver = _default_solver(cost)
    solver.setup(_states, _actions)
    assert min(_held_out_errors(solver, cost, DEFAULTS["reference_actions"])) > 0.3


def test_paper_dual_settings_are_one_setting_away():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **{**FAST, **PAPER_DUAL})
    assert (model.reg, model.dual_batch_size, model.dual_learning_rate) == (1e-5, 64, 1e-6)
    assert float(model.policy.reg) == pytest.approx(1e-5)
    assert model.dual_solver.learning_rate == 1e-6 and model.dual_solver.batch_size == 64
    model.learn(40)
    assert model.dual_updates > 0
