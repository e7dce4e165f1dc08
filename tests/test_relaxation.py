"""Relaxed marginals (semi-relaxed and unbalanced L2 OT) against a primal QP and POT; limits; bad input."""

import math

import numpy as np
import ot
import pytest
import torch as th
from conftest import normalized_cost, point_clouds
from scipy.optimize import minimize

import neural_ot as no
from neural_ot.relaxation import BALANCED, MarginalRelaxation, get_relaxation

EPS = 0.05
INF = math.inf


def _relaxed_qp(a, b, M, eps, rho_x, rho_y):
    """Independent reference: the primal, with a marginal exact (rho = inf) or penalised, solved by SLSQP."""
    n, m = M.shape
    ab, c = np.outer(a, b).ravel(), M.ravel()
    rows, cols = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)

    def f(t):
        value = c @ t + eps * np.sum(t**2 / ab)
        for rho, w, side in ((rho_x, a, rows), (rho_y, b, cols)):
            if rho != INF:
                value += rho / 2 * np.sum((np.bincount(side, t, w.size) - w) ** 2 / w)
        return value

    def g(t):
        grad = c + 2 * eps * t / ab
        for rho, w, side in ((rho_x, a, rows), (rho_y, b, cols)):
            if rho != INF:
                grad = grad + rho * ((np.bincount(side, t, w.size) - w) / w)[side]
        return grad

    cons = []
    for rho, w, side in ((rho_x, a, rows), (rho_y, b, cols)):
        if rho == INF:
            A = np.zeros((w.size, n * m))
            A[side, np.arange(n * m)] = 1
            cons.append({"type": "eq", "fun": lambda t, A=A, w=w: A @ t - w, "jac": lambda t, A=A: A})
    sol = minimize(
        f, ab.copy(), jac=g, constraints=cons, bounds=[(0, None)] * (n * m), method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 3000},
    )  # fmt: skip
    assert sol.success, sol.message
    return sol.x.reshape(n, m), sol.fun


def _dual_maximum(a, b, M, eps, unbalanced):
    """Maximise dual_objective over vector potentials with L-BFGS; return (u, v, value)."""
    n = M.shape[0]
    Mt, at, bt = th.tensor(M), th.tensor(a), th.tensor(b)

    def neg(x):
        x = th.tensor(x, requires_grad=True)
        d = no.dual_objective(x[:n], x[n:], Mt, eps, at, bt, unbalanced=unbalanced)
        (-d).backward()
        return -float(d.detach()), x.grad.numpy()

    sol = minimize(neg, np.zeros(M.shape[0] + M.shape[1]), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000})  # fmt: skip
    return sol.x[:n], sol.x[n:], -sol.fun


@pytest.fixture
def problem(rng):
    x, y = point_clouds(rng, 7, 6)
    return rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(6)), normalized_cost(x, y)


@pytest.mark.parametrize("unbalanced", [(INF, 0.3), (INF, 3.0), (0.5, INF), (0.4, 1.5)])
def test_relaxed_dual_matches_the_primal_qp(problem, unbalanced):
    """Strong duality, the same plan, and the optimal plan's marginals are a (1 - u / rho_x), b (1 - v / rho_y)."""
    a, b, M = problem
    T_ref, primal = _relaxed_qp(a, b, M, EPS, *unbalanced)
    u, v, dual = _dual_maximum(a, b, M, EPS, unbalanced)
    T = no.plan(u, v, M, EPS, a, b)
    assert dual == pytest.approx(primal, abs=1e-8)
    assert np.abs(T - T_ref).sum() < 1e-6
    rows, cols = get_relaxation(unbalanced).marginals(th.tensor(u), th.tensor(v), th.tensor(a), th.tensor(b))
    np.testing.assert_allclose(T.sum(1), rows.numpy(), atol=1e-7)
    np.testing.assert_allclose(T.sum(0), cols.numpy(), atol=1e-7)
    # The relaxation is active: some column (or row) leaves its weight.
    assert max(np.abs(T.sum(1) - a).sum(), np.abs(T.sum(0) - b).sum()) > 1e-3


def test_semi_relaxed_agrees_with_pot_in_the_limit(rng):
    """POT penalises masses (lambda = rho m for uniform b) and cannot take inf: its plan approaches ours as 1 / reg_m1."""
    x, y = point_clouds(rng, 7, 6)
    M = normalized_cost(x, y)
    a, b = np.ones(7) / 7, np.ones(6) / 6
    rho = 0.3
    u, v, _ = _dual_maximum(a, b, M, EPS, (INF, rho))
    T = no.plan(u, v, M, EPS, a, b)
    dist = []
    for reg_m1 in (1e3, 1e4):
        ref = ot.solve(M, a, b, reg=2 * EPS * M.size, reg_type="L2", unbalanced=(reg_m1, rho * 6),
                       unbalanced_type="L2", max_iter=100000, tol=1e-14)  # fmt: skip
        dist.append(np.abs(np.asarray(ref.plan) - T).sum())
    assert dist[1] < 1e-3 and dist[1] < dist[0] / 5


def test_limits_balanced_and_free(problem):
    """rho -> inf gives solve_discrete's balanced plan; rho -> 0 frees the columns (v -> 0)."""
    a, b, M = problem
    exact = no.solve_discrete(a, b, M, EPS)
    u, v, _ = _dual_maximum(a, b, M, EPS, (INF, 1e6))
    assert np.abs(no.plan(u, v, M, EPS, a, b) - exact.plan).sum() < 1e-4
    u0, v0, _ = _dual_maximum(a, b, M, EPS, (INF, 1e-6))
    assert np.abs(v0).max() < 1e-4
    # With v = 0 the plan is each row's own thresholded density, u its c-transform of zero.
    u_free = no.c_transform(np.zeros(6), M, EPS, b)
    assert np.abs(no.plan(u0, v0, M, EPS, a, b) - no.plan(u_free, np.zeros(6), M, EPS, a, b)).sum() < 1e-4


@pytest.mark.parametrize(
    "potentials, method, lr, tol",
    [("tabular", "gradient", 1e-2, 0.05), ("tabular", "semi-dual", 1e-2, 0.05), ("mlp", "gradient", 3e-3, 0.1)],
)
def test_stochastic_solver_converges_to_the_semi_relaxed_plan(rng, potentials, method, lr, tol):
    x, y = point_clouds(rng, 30, 30)
    scale = float(((x[:, None] - y[None]) ** 2).sum(-1).max())
    cost = no.SqEuclidean(normalize=scale)
    M = cost(x, y)
    w = np.ones(30) / 30
    u_ref, v_ref, _ = _dual_maximum(w, w, M, EPS, (INF, 0.2))
    T_ref = no.plan(u_ref, v_ref, M, EPS)
    assert np.abs(T_ref - no.solve_discrete(None, None, M, EPS).plan).sum() > 0.2  # the relaxation changes the plan
    solver = no.L2Dual(EPS, cost=cost, potentials=potentials, hidden_sizes=(64, 64), batch_size=30, learning_rate=lr,
                       lr_schedule="cosine", max_steps=3000, seed=0, dtype=th.float64, method=method,
                       unbalanced=(INF, 0.2), eval_batch_size=256)  # fmt: skip
    res = solver.fit(x, y)
    u, v = res.potential_values(th.tensor(x), th.tensor(y))
    assert np.abs(no.plan(u.numpy(), v.numpy(), M, EPS) - T_ref).sum() < tol
    if potentials == "tabular":
        assert res.marginal_error < 0.1  # measured against b (1 - v / rho), not b


def test_keypoint_pairs_keep_their_mass_under_relaxation(rng):
    """Neural potentials: the relaxation acts on the regular points; matched keypoints still carry their mass."""
    x, y = point_clouds(rng, 30, 30)
    cost = no.SqEuclidean(normalize="max")
    pairs = [(0, 0), (1, 5), (2, 9)]
    solver = no.MaskedL2Dual(EPS, cost=cost, hidden_sizes=(32, 32), batch_size=30, max_steps=200, seed=0,
                             unbalanced=(INF, 0.2))  # fmt: skip
    solver.fit(x, y, pairs=pairs)
    batch = solver.sample_batch(30)
    uu, vv = solver.potentials_on(batch)
    rows, cols = solver.target_marginals(batch, uu, vv)
    K = batch.n_keypoints
    assert K == 3 and th.equal(rows[:K], batch.wx[:K]) and th.equal(cols[:K], batch.wy[:K])
    assert not th.allclose(cols[K:], batch.wy[K:])


def test_relaxation_penalty_is_weighted_weight_decay():
    r = MarginalRelaxation(2.0, INF)
    u, v = th.tensor([1.0, -3.0]), th.tensor([5.0])
    a, b = th.tensor([0.25, 0.75]), th.tensor([1.0])
    assert float(r.penalty(u, v, a, b)) == pytest.approx((0.25 * 1 + 0.75 * 9) / 4)
    assert BALANCED.balanced and float(BALANCED.penalty(u, v, a, b)) == 0.0
    assert get_relaxation(1.5) == MarginalRelaxation(1.5, 1.5) and get_relaxation(None) is BALANCED


@pytest.mark.parametrize(
    "unbalanced, error, match",
    [
        (0.0, ValueError, r"`unbalanced` must be positive"),
        (-1.0, ValueError, r"`unbalanced` must be positive"),
        (float("nan"), ValueError, r"`unbalanced` must be positive"),
        ((1.0, 2.0, 3.0), ValueError, r"two strengths"),
        ((INF, "a"), TypeError, r"`unbalanced\[1\]` must be a positive float"),
    ],
)
def test_bad_relaxation_is_rejected(unbalanced, error, match):
    with pytest.raises(error, match=match):
        no.L2Dual(EPS, unbalanced=unbalanced)


def test_methods_that_cannot_relax_say_so():
    with pytest.raises(ValueError, match="balanced minibatch optimum"):
        no.L2Dual(EPS, method="exact", unbalanced=(INF, 1.0))
    with pytest.raises(ValueError, match="relax the columns only"):
        no.L2Dual(EPS, method="semi-dual", unbalanced=(1.0, INF))
    no.L2Dual(EPS, method="semi-dual", unbalanced=(INF, 1.0))  # the semi-relaxed problem is fine


def test_pot_cannot_take_an_exact_marginal_with_l2_relaxation(rng):
    """The stumbling block docs/conventions.rst records: POT returns the independent plan a b^T, with a warning only."""
    M = rng.random((6, 5))
    a, b = np.ones(6) / 6, np.ones(5) / 5
    with pytest.warns(RuntimeWarning):
        res = ot.solve(M, a, b, reg=1.0, reg_type="L2", unbalanced=(INF, 3.0), unbalanced_type="L2")
    np.testing.assert_array_equal(np.asarray(res.plan), np.outer(a, b))


@pytest.mark.parametrize("unbalanced", [(INF, 0.3), (INF, 3.0), (0.5, INF), (0.4, 1.5)])
def test_solve_discrete_relaxed_matches_the_primal_qp(problem, unbalanced):
    """The exact relaxed solve: the QP's plan and value, strong duality, and marginal errors (vs the optimum's) at tol."""
    a, b, M = problem
    T_ref, primal = _relaxed_qp(a, b, M, EPS, *unbalanced)
    res = no.solve_discrete(a, b, M, EPS, unbalanced=unbalanced)
    assert res.status == "converged" and max(res.marginal_errors) <= 1e-9
    assert np.abs(res.plan - T_ref).sum() < 1e-6
    # The gap at marginal error e is about e times the potentials' range (here below 1): 1e-9 at tol 1e-9.
    assert res.value == pytest.approx(primal, abs=1e-9) and res.value_dual == pytest.approx(res.value, abs=1e-9)
    rows, cols = get_relaxation(unbalanced).marginals(*(th.as_tensor(t) for t in (res.u, res.v, a, b)))
    np.testing.assert_allclose(res.plan.sum(1), rows.numpy(), atol=1e-9)
    np.testing.assert_allclose(res.plan.sum(0), cols.numpy(), atol=1e-9)


def test_solve_relaxed_takes_unequal_masses_and_pot_spelling(problem):
    """A relaxed side may carry another mass than the exact one; ``neural_ot.solve`` takes ``unbalanced`` as POT."""
    a, b, M = problem
    T_ref, _ = _relaxed_qp(a, 1.7 * b, M, EPS, INF, 0.3)
    res = no.solve(M, a, 1.7 * b, reg=EPS, unbalanced=(INF, 0.3))
    assert res.status == "converged" and np.abs(res.plan - T_ref).sum() < 1e-6
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-9)  # the exact side keeps its mass
    with pytest.raises(ValueError, match="equal total mass"):
        no.solve(M, a, 1.7 * b, reg=EPS)  # balanced: refused, as before


def test_solve_relaxed_limits_and_entropic(problem, rng):
    a, b, M = problem
    balanced = no.solve_discrete(a, b, M, EPS)
    near = no.solve_discrete(a, b, M, EPS, unbalanced=(INF, 1e5))
    assert np.abs(near.plan - balanced.plan).sum() < 1e-3
    # entropic: strong duality, and the plan of the generic dual maximum (L-BFGS on dual_objective)
    res = no.solve_discrete(a, b, M, EPS, reg_type="entropic", unbalanced=(INF, 0.5))
    assert res.status == "converged" and res.value_dual == pytest.approx(res.value, abs=1e-10)
    Mt, at, bt = th.tensor(M), th.tensor(a), th.tensor(b)

    def neg(x):
        x = th.tensor(x, requires_grad=True)
        d = no.dual_objective(x[:7], x[7:], Mt, EPS, at, bt, reg_type="entropic", unbalanced=(INF, 0.5))
        (-d).backward()
        return -float(d.detach()), x.grad.numpy()

    sol = minimize(neg, np.zeros(13), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000})
    T = no.plan(sol.x[:7], sol.x[7:], M, EPS, a, b, reg_type="entropic")
    assert np.abs(T - res.plan).sum() < 1e-6


def test_solve_relaxed_warm_start_from_its_own_solution(problem):
    a, b, M = problem
    first = no.solve_discrete(a, b, M, EPS, unbalanced=(INF, 0.3))
    again = no.solve_discrete(a, b, M, EPS, unbalanced=(INF, 0.3), potentials_init=(first.u, first.v))
    assert again.status == "converged" and again.n_iter <= 1 and np.abs(again.plan - first.plan).sum() < 1e-9


def test_solve_relaxed_value_is_differentiable_by_the_envelope_theorem(problem):
    """With M requiring grad, value's gradient in M is the relaxed plan (as for the balanced solve)."""
    a, b, M = problem
    Mt = th.tensor(M, requires_grad=True)
    res = no.solve_discrete(th.tensor(a), th.tensor(b), Mt, EPS, unbalanced=(INF, 0.3))
    res.value.backward()
    np.testing.assert_allclose(Mt.grad.numpy(), res.plan.detach().numpy(), atol=1e-12)
    # and against finite differences of the value
    i, j, h = 2, 3, 1e-6
    Mp = M.copy()
    Mp[i, j] += h
    up = no.solve_discrete(a, b, Mp, EPS, unbalanced=(INF, 0.3)).value
    down_M = M.copy()
    down_M[i, j] -= h
    down = no.solve_discrete(a, b, down_M, EPS, unbalanced=(INF, 0.3)).value
    assert (up - down) / (2 * h) == pytest.approx(float(Mt.grad[i, j]), abs=1e-6)


def _stiff_problem():
    rng = np.random.default_rng(5)
    return rng.uniform(size=(30, 20)), rng.random(30) + 0.1, rng.random(20) + 0.1


def test_a_stiff_entropic_relaxation_converges():
    """rho far above reg (rho 1, reg 1e-4): L-BFGS alone stopped at marginal errors up to 1 (tiny costs) or burnt its
    500 iterations (unit costs); Newton's method with exact block steps at each stage converges, to strong duality."""
    M, a, b = _stiff_problem()
    for scale in (1e-5, 1.0):
        res = no.solve(M * scale, a, b, reg=1e-4, reg_type="entropic", unbalanced=1.0)
        assert res.converged and max(res.marginal_errors) <= 1e-9 and res.n_iter <= 100
        assert res.value_dual == pytest.approx(res.value, rel=1e-9)


def test_the_lbfgs_fallback_ends_with_a_status_not_an_overflow():
    """Where Newton stops short, L-BFGS continues; on a stiff problem from zeros it stops unconverged, and its
    Newton-Krylov polish, which overflowed squaring an entropic gradient's norm (an OverflowError out of scipy), keeps
    L-BFGS's point instead: finite potentials and an honest status."""
    from neural_ot._relaxed_discrete import _lbfgs
    from neural_ot.discrete import _validated_problem
    from neural_ot.regularizers import Entropic

    M, a, b = _stiff_problem()
    prob = _validated_problem(a, b, M * 1e-5, None, Entropic(1e-4), 1e-9, balanced=False)
    zeros = (th.zeros(30, dtype=th.float64), th.zeros(20, dtype=th.float64))
    u, v, _, converged = _lbfgs(prob, MarginalRelaxation(1.0, 1.0), 1e-9, 500, zeros)
    assert not converged and bool(th.isfinite(u).all()) and bool(th.isfinite(v).all())


@pytest.mark.parametrize(
    "reg_type, reg, unbalanced",
    [
        ("entropic", 1e-4, (INF, 1.0)),
        ("entropic", 1e-4, (1.0, INF)),
        ("entropic", 1e-3, 10.0),
        ("entropic", 1e-2, 1e3),
        ("l2", 1e-5, 1.0),
        ("l2", 1e-5, (INF, 1.0)),
        ("l2", 1e-2, (1e3, INF)),
        ("l2", 1e-2, 0.01),
    ],
)
def test_relaxed_solves_converge_across_regimes(reg_type, reg, unbalanced):
    """Unit costs, weights of unequal mass, a mask: Newton converges in tens of iterations at any rho / reg (L-BFGS took
    50-500 and did not converge on several of these), to strong duality and the optimum's marginals."""
    rng = np.random.default_rng(0)
    M, a, b = rng.random((40, 30)), rng.random(40) + 0.1, rng.random(30) + 0.1
    mask = (rng.random((40, 30)) > 0.3).astype(float)
    res = no.solve(M, a, b, reg=reg, reg_type=reg_type, unbalanced=unbalanced, mask=mask)
    assert res.converged and res.n_iter <= 100
    assert res.value_dual == pytest.approx(res.value, rel=1e-8)
    assert float(np.abs(res.plan[mask == 0]).max()) == 0.0
    rows, cols = get_relaxation(unbalanced).marginals(*(th.as_tensor(t) for t in (res.u, res.v, a, b)))
    for mass, target in ((res.plan.sum(1), rows.numpy()), (res.plan.sum(0), cols.numpy())):
        assert np.abs(mass - target).sum() <= 1e-9 * target.sum()


@pytest.mark.parametrize("rho", [1e-2, 1.0, 1e4, INF])
def test_entropic_block_step_is_the_exact_row_maximum(rho):
    """After the block step each row's plan mass is the relaxed optimum's, a (1 - u / rho), the dual has not
    decreased, and a nearby u does worse (rho / reg up to 1e6, where the Lambert W's argument overflows)."""
    from neural_ot._relaxed_newton import entropic_block_step
    from neural_ot.discrete import _validated_problem
    from neural_ot.regularizers import Entropic

    rng = np.random.default_rng(1)
    M, a, b = rng.random((12, 9)), rng.random(12) + 0.1, rng.random(9) + 0.1
    prob = _validated_problem(a, b, M, None, Entropic(1e-2), 1e-9, balanced=False)
    relaxation = MarginalRelaxation(rho, INF)
    u, v = th.zeros(12, dtype=th.float64), th.tensor(rng.normal(size=9) * 0.1)

    Mt, at, bt = th.tensor(M), th.tensor(a), th.tensor(b)

    def dual(uu):
        return float(no.dual_objective(uu, v, Mt, 1e-2, at, bt, reg_type="entropic", unbalanced=(rho, INF)))

    new = entropic_block_step(prob, relaxation, u, v, "u")
    T = no.plan(new, v, M, 1e-2, a, b, reg_type="entropic")
    target = relaxation.marginals(new, v, prob.a, prob.b)[0].numpy()
    np.testing.assert_allclose(T.sum(1), target, rtol=1e-12, atol=1e-15)
    assert dual(new) >= dual(u)
    for i in range(12):
        for h in (1e-4, -1e-4):
            moved = new.clone()
            moved[i] += h
            assert dual(moved) < dual(new)


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_a_relaxed_side_may_have_points_the_mask_leaves_alone(reg_type):
    """A row (column) with no allowed pair carries no mass; on a relaxed side that is a penalty, not an infeasible
    problem: the solve converges with that row of the plan empty and its potential at rho (target mass a (1 - u / rho)
    = 0). On an exact side it stays refused, and so does a mask that allows nothing."""
    rng = np.random.default_rng(0)
    M, a, b = rng.random((8, 6)), rng.random(8) + 0.1, rng.random(6) + 0.1
    mask = np.ones((8, 6))
    mask[2], mask[:, 4] = 0.0, 0.0
    res = no.solve(M, a, b, reg=0.05, reg_type=reg_type, unbalanced=0.5, mask=mask)
    assert res.converged and res.value_dual == pytest.approx(res.value, abs=1e-12)
    assert res.plan[2].sum() == 0.0 and res.plan[:, 4].sum() == 0.0
    assert res.u[2] == pytest.approx(0.5, abs=1e-9) and res.v[4] == pytest.approx(0.5, abs=1e-9)
    # the other points: the plan of the problem without row 2 and column 4
    keep_r, keep_c = np.arange(8) != 2, np.arange(6) != 4
    sub = no.solve(M[keep_r][:, keep_c], a[keep_r], b[keep_c], reg=0.05, reg_type=reg_type, unbalanced=0.5)
    assert np.abs(res.plan[keep_r][:, keep_c] - sub.plan).sum() < 1e-9
    with pytest.raises(ValueError, match="all-zero rows"):
        no.solve(M, a, b, reg=0.05, reg_type=reg_type, unbalanced=(INF, 0.5), mask=mask)
    with pytest.raises(ValueError, match="all-zero columns"):
        no.solve(M, a, b, reg=0.05, reg_type=reg_type, unbalanced=(0.5, INF), mask=mask)
    with pytest.raises(ValueError, match="allows no pair"):
        no.solve(M, a, b, reg=0.05, reg_type=reg_type, unbalanced=0.5, mask=np.zeros((8, 6)))


def _clouds(seed, n, m):
    """Gaussian clouds, squared Euclidean cost (max 1), weights of unequal total mass (1 and 1.3)."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    return M / M.max(), a / a.sum(), 1.3 * b / b.sum()


@pytest.mark.parametrize("unbalanced", [0.1, 10.0, (1.0, INF)])
def test_relaxed_l2_on_point_clouds_near_the_lp_limit_converges(unbalanced):
    """250 x 230 clouds at POT reg 1e-3: the undamped Newton steps of a plan whose support is a forest of trees
    with unequal mass were cut to 1e-4 of their length, and all 500 iterations ran (20 of 48 such problems, 150-250
    points, failed so); with the trees' exact shifts they converge, to strong duality."""
    M, a, b = _clouds(0, 250, 230)
    res = no.solve(M, a, b, reg=1e-3 / (2 * 250 * 230), reg_type="l2", unbalanced=unbalanced)  # POT's reg 1e-3
    assert res.converged and res.n_iter <= 150
    assert res.value_dual == pytest.approx(res.value, rel=1e-8)
    rows, cols = get_relaxation(unbalanced).marginals(*(th.as_tensor(t) for t in (res.u, res.v, a, b)))
    for mass, target in ((res.plan.sum(1), rows.numpy()), (res.plan.sum(0), cols.numpy())):
        assert np.abs(mass - target).sum() <= 1e-9 * target.sum()


def test_relaxed_l2_without_the_tree_shifts_crawls(monkeypatch):
    from neural_ot import _relaxed_newton

    monkeypatch.setattr(_relaxed_newton, "_SHIFT_AFTER", 10**9)
    M, a, b = _clouds(0, 250, 230)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        res = no.solve(M, a, b, reg=1e-3 / (2 * 250 * 230), reg_type="l2", unbalanced=0.1, max_iter=200)
    assert not res.converged


def test_an_undamped_step_cut_to_a_sliver_gives_way_to_a_damped_one(monkeypatch):
    """The undamped Newton direction made useless (a huge random component: the line search accepts it only at a
    sliver of its length, or not at all): the damped directions tried next carry the solve to the same optimum in
    no more iterations than the intact solver; taking the slivers (no fallback) costs more iterations."""
    from neural_ot import _relaxed_newton

    M, a, b = _clouds(1, 60, 50)
    kwargs = dict(reg=1e-2 / (2 * 60 * 50), reg_type="l2", unbalanced=1.0)
    intact = no.solve(M, a, b, **kwargs)
    real = _relaxed_newton._newton_direction

    def sabotaged(prob, curv, g, error, cg_max_iter, damping=1.0):
        step, free_u, free_v = real(prob, curv, g, error, cg_max_iter, damping)
        if damping == 0.0:
            noise = th.randn(step.shape, generator=th.Generator().manual_seed(0), dtype=step.dtype)
            step = step + 1e8 * float(step.abs().max()) * noise
        return step, free_u, free_v

    monkeypatch.setattr(_relaxed_newton, "_newton_direction", sabotaged)
    res = no.solve(M, a, b, **kwargs)
    assert intact.converged and res.converged and res.n_iter <= intact.n_iter
    assert np.abs(res.plan - intact.plan).sum() <= 1e-8 * intact.plan.sum()
    monkeypatch.setattr(_relaxed_newton, "_DAMP_MORE_BELOW", 0.0)
    slivers = no.solve(M, a, b, **kwargs)
    assert slivers.n_iter > res.n_iter
