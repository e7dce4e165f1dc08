"""Relaxed solves whose potentials move far along the balanced problem's shift (neural_ot._shifted_relaxation).

Where ``rho`` is large against ``reg`` on weights of unequal mass the optimum's potentials are hundreds of times the
costs (``u`` near +c, ``v`` near -c), and a plan computed from ``u + v - C`` loses the digits that resolve it: these
problems stalled at marginal errors of 1e-9 to 1e-7 before the solver carried the common shift apart.
"""

import math

import numpy as np
import pytest
import torch as th

import neural_ot as no
from neural_ot._relaxed_newton import entropic_block_step
from neural_ot._shifted_relaxation import ShiftedRelaxation, recentred, whole_potentials
from neural_ot.discrete import _validated_problem
from neural_ot.duals import _dual_value
from neural_ot.regularizers import Entropic, SquaredL2
from neural_ot.relaxation import MarginalRelaxation, get_relaxation

INF = math.inf


def _unequal_clouds(n=40, m=30, mass_b=0.6, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    return M / M.max(), a / a.sum(), b / b.sum() * mass_b


@pytest.mark.parametrize(
    "reg_type, reg, unbalanced",
    [
        ("l2", 1e-8, (INF, 1e3)),
        ("l2", 1e-8, 1e3),
        ("l2", 1e-7, (1e3, INF)),
        ("entropic", 1e-4, 1e5),
    ],
)
def test_solves_far_along_the_shift_converge_to_their_optimum(reg_type, reg, unbalanced):
    """rho / reg from 1e9 to 1e11: the potentials reach 250-25,000 times the largest cost; the solve converges, its
    plan's marginals are the optimum's at the returned (whole) potentials and the duality gap closes (the plan is
    dual feasible by construction, so these two are the optimality certificate). Before, each stalled."""
    M, a, b = _unequal_clouds()
    res = no.solve(M, a, b, reg=reg, reg_type=reg_type, unbalanced=unbalanced)
    assert res.converged and res.n_iter <= 100
    assert float(np.abs(res.u).max()) >= 100.0  # the regime: far along the shift
    rows, cols = get_relaxation(unbalanced).marginals(*(th.as_tensor(t) for t in (res.u, res.v, a, b)))
    for mass, target in ((res.plan.sum(1), rows.numpy()), (res.plan.sum(0), cols.numpy())):
        assert np.abs(mass - target).sum() <= 1e-9 * target.sum()
    # the gap is about the marginal error (tol 1e-9) times the potentials over the value: up to 2.4e-9 here
    assert res.value_dual == pytest.approx(res.value, rel=1e-8)


def test_a_shifted_relaxation_is_the_same_dual_and_marginals():
    """At (u - c, v + c) with shift c: the dual value, its gradient in the data, and the target marginals are those of
    the plain relaxation at (u, v), and ``whole`` gives (u, v) back."""
    M, a, b = (th.tensor(t) for t in _unequal_clouds(12, 9))
    rng = np.random.default_rng(3)
    u, v = th.tensor(rng.normal(size=12) + 50.0), th.tensor(rng.normal(size=9) - 50.0)
    plain, c = MarginalRelaxation(3e2, 5e2), 49.5
    shifted = ShiftedRelaxation(3e2, 5e2, c)
    for reg in (SquaredL2(1e-3), Entropic(1e-1)):
        a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        a2, b2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        d1 = _dual_value(u, v, M, reg, a1, b1, None, plain)
        d2 = _dual_value(u - c, v + c, M, reg, a2, b2, None, shifted)
        assert float(d2.detach()) == pytest.approx(float(d1.detach()), rel=1e-12)
        g1, g2 = th.autograd.grad(d1, (a1, b1)), th.autograd.grad(d2, (a2, b2))
        for x, y in zip(g1, g2):
            np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-11, atol=1e-11)
    for x, y in zip(plain.marginals(u, v, a, b), shifted.marginals(u - c, v + c, a, b)):
        np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-13)
    for x, y in zip((u, v), shifted.whole(u - c, v + c)):
        np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-15)


@pytest.mark.parametrize("side", ["u", "v"])
def test_the_entropic_block_step_under_a_shift_is_the_whole_potentials_step(side):
    """The exact row (column) maximisation of the shifted dual is that of the plain dual, moved by the shift."""
    M, a, b = _unequal_clouds(12, 9)
    prob = _validated_problem(a, b, M, None, Entropic(1e-2), 1e-9, balanced=False)
    rng = np.random.default_rng(4)
    u, v = th.tensor(rng.normal(size=12) * 0.1 + 3.0), th.tensor(rng.normal(size=9) * 0.1 - 3.0)
    plain, c = MarginalRelaxation(20.0, 30.0), 2.75
    shifted = ShiftedRelaxation(20.0, 30.0, c)
    expected = entropic_block_step(prob, plain, u, v, side)
    got = entropic_block_step(prob, shifted, u - c, v + c, side)
    np.testing.assert_allclose((got + c if side == "u" else got - c).numpy(), expected.numpy(), rtol=1e-12)


def test_recentring_moves_only_a_level_beyond_the_costs():
    """Potentials at the costs' scale are left as they are (the same tensors and relaxation: those problems are solved
    as before); a level beyond it goes into the shift, the whole potentials unchanged; balanced problems never move."""
    u, v = th.tensor([0.3, 0.5]), th.tensor([0.1, -0.2, 0.4])
    plain = MarginalRelaxation(1.0, INF)
    kept = recentred(u, v, plain, 1.0)
    assert kept[0] is u and kept[1] is v and kept[2] is plain
    far_u, far_v = u + 300.0, v - 300.0
    nu, nv, moved = recentred(far_u, far_v, plain, 1.0)
    assert isinstance(moved, ShiftedRelaxation) and abs(moved.shift - 300.0) < 1.0
    assert max(float(nu.abs().max()), float(nv.abs().max())) < 1.0
    for x, y in zip(whole_potentials(nu, nv, moved), (far_u, far_v)):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-15)
    again = recentred(nu + 500.0, nv - 500.0, moved, 1.0)[2]
    assert isinstance(again, ShiftedRelaxation) and abs(again.shift - 800.0) < 1.0  # shifts add up
    balanced = MarginalRelaxation()
    kept = recentred(far_u, far_v, balanced, 1.0)
    assert kept[0] is far_u and kept[1] is far_v and kept[2] is balanced
