"""Exact shifts of unbalanced trees in the L2 Newton stage: the 1-D optimum they claim, and the crawl they end."""

import numpy as np
import pytest
import torch as th

import neural_ot as no
from neural_ot import _newton, _tree_shifts
from neural_ot._dual_problem import _Problem
from neural_ot.regularizers import SquaredL2


def _weighted(seed, n, m):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    return rng.uniform(size=(n, m)), a / a.sum(), b / b.sum()


def _forest_point(seed):
    """A problem at small eps and potentials whose active pairs form several trees of unequal mass."""
    M, a, b = _weighted(seed, 40, 30)
    eps = 1e-7
    prob = _Problem(th.as_tensor(a), th.as_tensor(b), th.as_tensor(M), None, SquaredL2(eps))
    # Each row active on its cheapest column only: 40 rows on at most 30 columns, trees of unequal mass.
    u = th.as_tensor(M.min(1) + 1e-9)
    v = th.zeros(30, dtype=th.float64)
    return prob, u, v


@pytest.mark.parametrize("seed", range(4))
def test_a_shift_is_the_exact_minimiser_along_its_tree(seed, monkeypatch):
    monkeypatch.setattr(_tree_shifts, "_MAX_TREES", 1)
    prob, u, v = _forest_point(seed)
    z = prob.z(u, v).numpy()
    assert (z > 0).sum() >= 40  # every row has a pair
    u2, v2 = _tree_shifts.tree_shifts(prob, u, v)
    moved_u, moved_v = (u2 - u).numpy(), (v2 - v).numpy()
    shift = moved_u[moved_u != 0]
    assert shift.size and np.allclose(shift, shift[0]) and np.allclose(moved_v[moved_v != 0], -shift[0])
    # The dual's derivative along the tree's direction is zero at the new point: its rows' and columns' excess mass
    # (plan minus weights) are equal.
    P = (prob.z(u2, v2).clamp(min=0) * prob.a[:, None] * prob.b[None, :] / (2 * prob.r.reg)).numpy()
    rows, cols = moved_u != 0, moved_v != 0
    excess_rows = P[rows].sum() - prob.a.numpy()[rows].sum()
    excess_cols = P[:, cols].sum() - prob.b.numpy()[cols].sum()
    assert excess_rows == pytest.approx(excess_cols, abs=1e-12)
    assert prob.loss(u2, v2) < prob.loss(u, v)


@pytest.mark.parametrize("seed", range(4))
def test_shifts_never_increase_the_dual_loss(seed):
    prob, u, v = _forest_point(seed)
    loss = prob.loss(u, v)
    for _ in range(3):
        u, v = _tree_shifts.tree_shifts(prob, u, v)
        new = prob.loss(u, v)
        assert new <= loss + 1e-15
        loss = new


@pytest.mark.parametrize("seed", [0, 1, 9, 10])
def test_weighted_problems_near_the_lp_limit_converge(seed, monkeypatch):
    # POT reg 1e-5 on 60 x 60 uniform costs with random weights: without the shifts these ran all 500 Newton
    # iterations (marginal errors 1e-4 to 1e-2), each damped step moving an unbalanced tree by a sliver.
    M, a, b = _weighted(seed, 60, 60)
    eps = 1e-5 / (2 * 60 * 60)
    res = no.solve_discrete(a, b, M, eps)
    assert res.status == "converged" and res.n_iter < 150
    monkeypatch.setattr(_newton, "_SHIFT_AFTER", 10**9)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        crawl = no.solve_discrete(a, b, M, eps)
    assert crawl.status == "max_iter"


def test_the_shifts_keep_the_optimum_where_the_crawl_converged(monkeypatch):
    M, a, b = _weighted(7, 60, 60)  # converged without the shifts, in 344 iterations
    eps = 1e-5 / (2 * 60 * 60)
    res = no.solve_discrete(a, b, M, eps, tol=1e-10)
    monkeypatch.setattr(_newton, "_SHIFT_AFTER", 10**9)
    slow = no.solve_discrete(a, b, M, eps, tol=1e-10, max_iter=2000)
    assert res.status == slow.status == "converged"
    assert res.n_iter < slow.n_iter / 2
    assert np.abs(res.plan - slow.plan).sum() < 1e-8


def test_a_shift_that_raises_the_dual_loss_is_not_taken(monkeypatch):
    # Balanced Newton keeps a tree shift only if the dual improves (shifts capped at the reach of a dense problem's
    # largest pairs can overshoot a pair none of them listed). A shift that raises every z by 0.5 (far more mass) must
    # leave the iterates as a solve that shifts nothing.
    M, a, b = _weighted(7, 60, 60)
    eps = 1e-5 / (2 * 60 * 60)
    calls = []

    def shift(name):
        def fn(prob, u, v):
            calls.append(name)
            return (u + 1.0, v - 0.5) if name == "bad" else (u, v)

        return fn

    monkeypatch.setattr(_newton, "tree_shifts", shift("none"))
    ref = no.solve_discrete(a, b, M, eps, tol=1e-10, max_iter=2000)
    monkeypatch.setattr(_newton, "tree_shifts", shift("bad"))
    res = no.solve_discrete(a, b, M, eps, tol=1e-10, max_iter=2000)
    assert "bad" in calls and "none" in calls
    assert res.status == ref.status == "converged"
    assert res.n_iter == ref.n_iter
    np.testing.assert_array_equal(res.plan, ref.plan)


def test_masked_and_working_set_problems_take_the_shifts(monkeypatch):
    # The shifts list only allowed pairs (a mask) and the working set's pairs (a sparse stage).
    M, a, b = _weighted(0, 120, 100)
    mask = (np.random.default_rng(0).random((120, 100)) < 0.7).astype(float)
    mask[np.arange(120), np.arange(120) % 100] = 1.0
    eps = 1e-5 / (2 * 120 * 100)
    calls = []
    run = _tree_shifts.tree_shifts

    def spy(prob, u, v):
        calls.append(type(prob).__name__)
        return run(prob, u, v)

    monkeypatch.setattr(_newton, "tree_shifts", spy)
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 1000)  # a working set at this size
    monkeypatch.setattr(_newton, "_NUMPY_STAGE_WORK", 0)
    monkeypatch.setattr(_newton, "_NUMPY_DENSE_WORK", 0)
    for m in (None, mask):
        res = no.solve_discrete(a, b, M, eps, mask=m)
        assert res.status == "converged"
        if m is not None:
            assert res.plan[m == 0].max() == 0.0
    assert "_SparseProblem" in calls


def _relaxed_point(seed, rho):
    """The forest point of :func:`_forest_point` with both marginals relaxed at strength ``rho``."""
    from neural_ot.relaxation import MarginalRelaxation

    prob, u, v = _forest_point(seed)
    relaxation = MarginalRelaxation(rho, rho)
    curvature = (prob.a / rho, prob.b / rho)
    return prob, u, v, relaxation, curvature


def _relaxed_loss(prob, relaxation, u, v):
    return prob.loss(u, v) + float(relaxation.penalty(u, v, prob.a, prob.b))


@pytest.mark.parametrize("seed, rho", [(0, 1e-6), (1, 1e-7), (2, 1e-5), (3, 1e-6)])
def test_a_relaxed_shift_is_the_exact_minimiser_along_its_tree(seed, rho, monkeypatch):
    # rho of the order of the trees' potentials (1e-7 to 1e-6 here), so that the penalty takes part in the root.
    monkeypatch.setattr(_tree_shifts, "_MAX_TREES", 1)
    prob, u, v, relaxation, curvature = _relaxed_point(seed, rho)
    targets = relaxation.marginals(u, v, prob.a, prob.b)
    u2, v2 = _tree_shifts.tree_shifts(prob, u, v, targets, curvature)
    moved_u, moved_v = (u2 - u).numpy(), (v2 - v).numpy()
    shift = moved_u[moved_u != 0]
    assert shift.size and np.allclose(shift, shift[0]) and np.allclose(moved_v[moved_v != 0], -shift[0])
    # Zero derivative along the tree's direction: its rows' and columns' excess over the relaxed optimum's
    # marginals at the new point are equal (the penalty's part moved with the shift).
    P = (prob.z(u2, v2).clamp(min=0) * prob.a[:, None] * prob.b[None, :] / (2 * prob.r.reg)).numpy()
    rows_target, cols_target = (t.numpy() for t in relaxation.marginals(u2, v2, prob.a, prob.b))
    rows, cols = moved_u != 0, moved_v != 0
    excess_rows = P[rows].sum() - rows_target[rows].sum()
    excess_cols = P[:, cols].sum() - cols_target[cols].sum()
    assert excess_rows == pytest.approx(excess_cols, rel=1e-12, abs=1e-12)
    # The penalty's share of the balance is not negligible: the balanced shift would have moved the tree elsewhere.
    balanced = _tree_shifts.tree_shifts(prob, u, v)
    assert not th.allclose(balanced[0], u2, rtol=0, atol=1e-3 * abs(shift[0]))
    assert _relaxed_loss(prob, relaxation, u2, v2) < _relaxed_loss(prob, relaxation, u, v)


@pytest.mark.parametrize("slope", [0.0, 0.3, 50.0])
def test_root_with_a_slope_solves_its_piecewise_linear_equation(slope):
    rng = np.random.default_rng(int(slope * 10))
    x, w = -np.abs(rng.normal(size=12)), rng.uniform(0.1, 1.0, 12)  # pairs leaving a tree: inactive at s = 0
    target = 2.0

    def f(s):
        return float(w @ np.maximum(x + s, 0.0) + slope * s)

    s = _tree_shifts._root(x, w, target, slope)
    assert s > 0 and f(s) == pytest.approx(target, rel=1e-12)
    if slope > 0:  # with no pair at all, the penalty alone takes the excess
        assert _tree_shifts._root(np.empty(0), np.empty(0), target, slope) == pytest.approx(target / slope)


def test_a_large_dense_problem_shifts_within_the_reach_of_its_candidates(monkeypatch):
    # Above _MAX_PAIRS a dense problem lists only its pairs of largest z; no tree moves farther than the largest -z
    # among them, and the dual still decreases.
    prob, u, v = _forest_point(2)
    full = _tree_shifts.tree_shifts(prob, u, v)
    monkeypatch.setattr(_tree_shifts, "_MAX_PAIRS", 60)  # of 1200 pairs, 40 of them active
    z = prob.z(u, v).flatten()
    reach = -float(th.topk(z, 60).values.min())
    part = _tree_shifts.tree_shifts(prob, u, v)
    moved = th.cat([part[0] - u, part[1] - v]).abs()
    assert 0 < float(moved.max()) <= reach + 1e-15
    assert prob.loss(*part) < prob.loss(u, v)
    assert not th.equal(part[0], full[0])  # the reach bound bit: the full candidate set moves some tree farther
    monkeypatch.setattr(_tree_shifts, "_MAX_PAIRS", 30)  # fewer candidates than active pairs: nothing moves
    same = _tree_shifts.tree_shifts(prob, u, v)
    assert same[0] is u and same[1] is v


def test_targets_without_curvature_are_refused():
    # A relaxed problem's targets and curvature go together: one without the other used to fall back silently to the
    # balanced shifts.
    prob, u, v, relaxation, curvature = _relaxed_point(0, 1e-6)
    targets = relaxation.marginals(u, v, prob.a, prob.b)
    with pytest.raises(ValueError, match="`targets` and `curvature` go together"):
        _tree_shifts.tree_shifts(prob, u, v, targets)
    with pytest.raises(ValueError, match="`targets` and `curvature` go together"):
        _tree_shifts.tree_shifts(prob, u, v, curvature=curvature)
