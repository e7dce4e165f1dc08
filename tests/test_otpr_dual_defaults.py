"""OTPR's default dual settings solve a fixed synthetic problem within their budget; the paper's are one setting away."""

import inspect

import numpy as np
import pytest
import torch as th
from otpr_helpers import FAST, IdentityEnvBox

import neural_ot as no
from otpr_sb3 import OTPR, PAPER_DUAL
from otpr_sb3.arguments import DUAL_KWARGS
from otpr_sb3.otpr import DEFAULT_SETTINGS

# The dual of a pretrained actor: the settings left unset take their fine-tuning values.
DEFAULTS = {
    **{k: p.default for k, p in inspect.signature(OTPR.__init__).parameters.items()},
    **{f"dual_{k}": v for k, v in DUAL_KWARGS.items()},
    **{("dual_method" if k == "method" else k): v for k, v in DEFAULT_SETTINGS["fine-tuning"].items()},
}
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


def _held_out_errors(solver, cost, n_reference, n_batches=3):
    """Held-out marginal errors of the plan, with u the c-transform of v over fresh reference actions (OTPR's u)."""
    reg = DEFAULTS["reg"]
    errors = []
    for seed in range(n_batches):  # held-out batches of 1024: Monte-Carlo floor well below the threshold at this reg
        gen = th.Generator().manual_seed(100 + seed)
        batch = solver.sample_batch(1024, gen)
        _, v = solver.potentials_on(batch)
        ref = _actions(n_reference, gen)  # not the held-out actions
        u = no.c_transform(solver.v(ref).detach(), cost.matrix(batch.x, ref), reg)
        T = no.plan(u, v, cost.matrix(batch.x, batch.y), reg, batch.wx, batch.wy)
        errors.append(no.relative_marginal_errors(T.sum(1), T.sum(0), batch.wx, batch.wy))
    return errors


def _trained_default_solver(cost):
    solver = _default_solver(cost)
    solver.setup(_states, _actions)
    for _ in range(DEFAULTS["dual_start"] * DEFAULTS["dual_steps"]):
        solver.step()
    return solver


def test_default_dual_reaches_the_marginal_threshold_within_dual_start():
    """As OTPR configures it (method, batch, steps, learning rate, reg, (128, 128) potentials), the dual solves a
    fixed cost to a held-out marginal error of 0.1 within the `dual_start` updates OTPR waits before using H
    (u from 1024 reference actions: the c-transform of the learned v against the action measure)."""
    cost = _AdvantageLikeCost()
    errors = _held_out_errors(_trained_default_solver(cost), cost, 1024)
    assert max(max(e) for e in errors) <= 0.1, errors


def test_reference_sample_size_sets_the_state_side_error():
    """With OTPR's M reference actions the state side carries a Monte-Carlo error that shrinks with M."""
    cost = _AdvantageLikeCost()
    solver = _trained_default_solver(cost)
    states_error = {M: float(np.median([e[0] for e in _held_out_errors(solver, cost, M, 7)])) for M in (8, 48, 1024)}
    assert states_error[8] > states_error[48] > states_error[1024]
    assert states_error[DEFAULTS["reference_actions"]] <= 0.2, states_error


def test_untrained_potentials_are_far_from_the_threshold():
    """The check above can fail: the same measurement on the initial potentials is above its threshold."""
    cost = _AdvantageLikeCost()
    solver = _default_solver(cost)
    solver.setup(_states, _actions)
    assert min(max(e) for e in _held_out_errors(solver, cost, 1024)) > 0.1


def test_paper_dual_settings_are_one_setting_away():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **{**FAST, **PAPER_DUAL})
    assert (model.reg, model.dual_kwargs["batch_size"], model.dual_kwargs["learning_rate"]) == (1e-5, 64, 1e-6)
    assert model.policy.guidance.reg == pytest.approx(1e-5)
    assert model.policy.guidance.trainer.solver.learning_rate == 1e-6 and model.policy.guidance.trainer.solver.batch_size == 64
    assert (
        model.policy.guidance.trainer.solver.method == "gradient" and model.dual_kwargs["reference_actions"] == 0
    )  # the paper learns u and v
    model.learn(40)
    assert model.dual_updates > 0
