"""The exact solver against independent references: POT, a QP solver and closed forms."""

import numpy as np
import ot
import pytest
import torch as th
from conftest import normalized_cost, point_clouds
from scipy.optimize import minimize

import neural_ot as no

POT_TIGHT = {"stopThr": 1e-13, "numItermax": 20000}


@pytest.mark.parametrize("n,m", [(30, 30), (40, 25), (15, 60)])
@pytest.mark.parametrize("kind", ["spread", "clustered"])
@pytest.mark.parametrize("eps", [1e-1, 1e-3, 1e-5])
def test_l2_uniform_matches_pot(rng, n, m, kind, eps):
    x, y = point_clouds(rng, n, m, kind=kind)
    M = normalized_cost(x, y)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    res = no.solve_discrete(a, b, M, eps)
    ref = ot.smooth.smooth_ot_dual(a, b, M, 2 * eps * n * m, reg_type="l2", **POT_TIGHT)
    assert res.converged and res.marginal_error <= 1e-9
    # A tolerance from the problem, not from the reference: 1% of an entry of the uniform plan 1 / (n m).
    # (POT's L-BFGS stops with marginal errors up to ~1e-5 at eps = 1e-5; the duality gap below certifies ours.)
    np.testing.assert_allclose(res.plan, ref, atol=0.01 / (n * m), rtol=0)
    assert abs(res.duality_gap) <= 1e-9 * max(1.0, abs(res.value))


def _l2_qp(a, b, M, eps, mask=None):
    """Independent reference: the primal QP solved by SLSQP on the plan entries."""
    n, m = M.shape
    keep = np.ones((n, m), bool) if mask is None else mask.astype(bool)
    idx = np.flatnonzero(keep)
    ab = np.outer(a, b).ravel()[idx]
    c = M.ravel()[idx]

    def f(t):
        return c @ t + eps * np.sum(t**2 / ab)

    def g(t):
        return c + 2 * eps * t / ab

    rows, cols = np.unravel_index(idx, (n, m))
    A = np.zeros((n + m - 1, idx.size))
    A[rows, np.arange(idx.size)] = 1
    for k in range(m - 1):
        A[n + k, cols == k] = 1
    rhs = np.concatenate([a, b[:-1]])
    cons = {"type": "eq", "fun": lambda t: A @ t - rhs, "jac": lambda t: A}
    t0 = ab.copy() if mask is None else np.full(idx.size, a.sum() / idx.size)
    sol = minimize(
        f,
        t0,
        jac=g,
        constraints=[cons],
        bounds=[(0, None)] * idx.size,
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 2000},
    )
    T = np.zeros(n * m)
    T[idx] = sol.x
    return T.reshape(n, m), sol.fun


@pytest.mark.parametrize("eps", [0.5, 0.05, 0.005])
def test_l2_nonuniform_matches_qp(rng, eps):
    n, m = 7, 6
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    res = no.solve_discrete(a, b, M, eps)
    T, value = _l2_qp(a, b, M, eps)
    assert res.converged
    np.testing.assert_allclose(res.plan, T, atol=1e-6)
    np.testing.assert_allclose(res.value, value, rtol=1e-7)


def test_l2_nonuniform_matches_pot_conditional_gradient(rng):
    n, m, eps = 20, 15, 0.02
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    ab = np.outer(a, b)
    G = ot.optim.cg(
        a, b, M, eps, lambda G: np.sum(G**2 / ab), lambda G: 2 * G / ab, numItermax=5000, stopThr=1e-12, stopThr2=1e-14
    )
    res = no.solve_discrete(a, b, M, eps)
    # Frank-Wolfe converges sublinearly: compare objectives tightly and plans loosely.
    value_cg = np.sum(M * G) + eps * np.sum(G**2 / ab)
    assert res.value <= value_cg + 1e-12
    np.testing.assert_allclose(res.value, value_cg, rtol=1e-3)
    np.testing.assert_allclose(res.plan, G, atol=2e-3)


@pytest.mark.parametrize("eps", [1.0, 0.1, 0.01])
def test_entropic_matches_sinkhorn(rng, eps):
    n, m = 30, 40
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    res = no.solve_discrete(a, b, M, eps, reg_type="entropic")
    ref = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", stopThr=1e-14, numItermax=100000)
    assert res.converged
    np.testing.assert_allclose(res.plan, ref, atol=1e-10)
    # KL(T | a b^T) form of the primal.
    kl = np.sum(ref * np.log(ref / np.outer(a, b))) - ref.sum() + 1.0
    np.testing.assert_allclose(res.value, np.sum(M * ref) + eps * kl, rtol=1e-8)


@pytest.mark.parametrize("reg_type,rel_gap", [("l2", 1e-3), ("entropic", 1e-2)])
def test_small_eps_approaches_emd(rng, reg_type, rel_gap):
    n, m = 30, 30
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    emd_cost = ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), M)
    gaps = []
    for eps in [1e-2, 1e-4, 1e-6] if reg_type == "l2" else [1e-1, 1e-2, 1e-3]:
        res = no.solve_discrete(None, None, M, eps, reg_type=reg_type)
        assert res.value_linear >= emd_cost - 1e-10
        gaps.append(res.value_linear - emd_cost)
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < rel_gap * emd_cost


@pytest.mark.parametrize("eps", [1e-2, 1e-4])
def test_masked_equals_big_cost(rng, eps):
    n, m = 40, 40
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    pairs = [(0, 5), (3, 3), (10, 20), (39, 0)]
    mask = no.keypoint_mask(n, m, pairs)
    # tol 1e-11: the two solves take different paths (the big cost widens the continuation's range), and at the
    # default 1e-9 their plans may differ by about that relative error
    res = no.solve_discrete(None, None, M, eps, mask=mask, tol=1e-11)
    big = no.solve_discrete(None, None, M + 10.0 * (1 - mask), eps, tol=1e-11)
    ref = ot.smooth.smooth_ot_dual(
        np.full(n, 1 / n), np.full(m, 1 / m), M + 10.0 * (1 - mask), 2 * eps * n * m, reg_type="l2", **POT_TIGHT
    )
    assert res.converged
    np.testing.assert_allclose(res.plan, big.plan, atol=1e-12)
    np.testing.assert_allclose(res.plan, ref, atol=1e-5)
    for i, j in pairs:  # matched keypoints carry exactly their mass
        assert res.plan[i, j] == pytest.approx(1 / n, rel=1e-9)
    unmasked = no.solve_discrete(None, None, M, eps)
    assert np.abs(unmasked.plan - res.plan).sum() > 0.1  # the mask changes the solution


@pytest.mark.parametrize(("reg_type", "reg"), [("l2", 1e-9), ("l2", 0.1), ("entropic", 0.05), ("entropic", 1e-3)])
@pytest.mark.parametrize("masked_cost", [1e12, -1e3])
def test_costs_on_masked_pairs_do_not_change_the_solve(rng, reg_type, reg, masked_cost):
    # POT's habit of a huge cost where the mask is 0 once got such solves refused (L2 at reg 1e-9: "too small for
    # float64 on costs of magnitude 1e12") or stalled at 1e-8-6e-6, and a low one overflowed the entropic kernel to NaN.
    n, m = 60, 50
    M = rng.random((n, m))
    mask = (rng.random((n, m)) < 0.5).astype(float)
    mask[np.arange(n), np.arange(n) % m] = 1.0
    ref = no.solve_discrete(None, None, M, reg, reg_type=reg_type, mask=mask)
    res = no.solve_discrete(None, None, np.where(mask > 0, M, masked_cost), reg, reg_type=reg_type, mask=mask)
    assert ref.converged and res.converged
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-12, rtol=0)
    assert res.value == pytest.approx(ref.value, rel=1e-9)
    assert res.plan[mask == 0].max() == 0.0


def test_weights_with_zeros_are_supported(rng):
    n, m = 10, 12
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    a = rng.dirichlet(np.ones(n))
    a[[2, 5]] = 0
    a /= a.sum()
    b = rng.dirichlet(np.ones(m))
    res = no.solve_discrete(a, b, M, 0.05)
    assert res.converged
    assert np.all(res.plan[[2, 5]] == 0)
    np.testing.assert_allclose(res.plan.sum(0), b, atol=1e-10)


def test_torch_inputs_and_dtypes(rng):
    x, y = point_clouds(rng, 12, 9)
    M = normalized_cost(x, y)
    r64 = no.solve_discrete(None, None, M, 0.01)
    assert isinstance(r64.plan, np.ndarray) and r64.plan.dtype == np.float64
    r32 = no.solve_discrete(None, None, M.astype(np.float32), 0.01)
    assert r32.plan.dtype == np.float32 and r32.u.dtype == np.float32
    rt = no.solve_discrete(None, None, th.tensor(M, dtype=th.float32), 0.01)
    assert isinstance(rt.plan, th.Tensor) and rt.plan.dtype == th.float32
    np.testing.assert_allclose(rt.plan.numpy(), r64.plan, atol=1e-7)


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_q_value_scale_costs_with_paper_eps(rng, reg_type):
    """eps = 1e-5 (the paper's lambda) with costs of Q-value scale: no overflow, no NaN."""
    M = rng.uniform(10.0, 1000.0, size=(50, 60))
    res = no.solve_discrete(None, None, M, 1e-5, reg_type=reg_type)
    for arr in (res.plan, res.u, res.v, res.density):
        assert np.all(np.isfinite(arr))
    assert res.converged and res.marginal_error <= 1e-9


def test_plan_and_density_written_into_the_solver_buffers_are_the_potentials_own(rng):
    """The result's plan and density reuse the Newton buffers: distinct arrays, both equal to the closed form of (u, v)."""
    n = 520  # above the working-set threshold: continuation stages and (n, n) buffers shared between them
    x, y = point_clouds(rng, n, n)
    M = normalized_cost(x, y)
    eps = 0.05 / (2 * n * n)
    res = no.solve_discrete(None, None, M, eps)
    assert res.converged
    assert not np.shares_memory(res.plan, res.density)
    density = np.maximum(res.u[:, None] + res.v[None, :] - M, 0.0) / (2 * eps)
    np.testing.assert_allclose(res.density, density, rtol=1e-12, atol=1e-9 * density.max())
    np.testing.assert_allclose(res.plan, density / n**2, rtol=1e-12, atol=1e-9 * density.max() / n**2)


def test_large_problem_reaches_tolerance(rng):
    n = 400
    x, y = point_clouds(rng, n, n)
    M = normalized_cost(x, y)
    res = no.solve_discrete(None, None, M, 1e-2 / (2 * n * n))  # POT reg = 1e-2
    assert res.converged and res.marginal_error <= 1e-9
    emd = ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), M)
    assert res.value_linear == pytest.approx(emd, rel=1e-3)


def test_entropic_small_eps_reaches_tol_where_armijo_cannot_resolve():
    """Regression (found by hypothesis): near the optimum the objective's decrease is below float64
    resolution; the solver must still drive the marginal error below tol."""
    rng = np.random.default_rng(1842)
    M = rng.uniform(0, 1, size=(9, 2))
    a, b = rng.dirichlet(np.ones(9)), rng.dirichlet(np.ones(2))
    res = no.solve_discrete(a, b, M, 1e-3, reg_type="entropic")
    assert res.converged and res.marginal_error <= 1e-9
    assert abs(res.duality_gap) <= 1e-9 * max(1.0, abs(res.value))


def test_iteration_counts_report_sinkhorn_sweeps(rng):
    x, y = point_clouds(rng, 60, 60)
    M = normalized_cost(x, y)
    entropic = no.solve_discrete(None, None, M, 0.05, reg_type="entropic")
    assert entropic.converged and entropic.n_sinkhorn > 0  # solved by the warm-start sweeps, counted
    l2 = no.solve_discrete(None, None, M, 0.05)
    assert l2.n_sinkhorn == 0 and l2.n_iter > 0


def test_continuation_leaves_the_problem_regulariser_alone():
    """Each eps-continuation stage is its own problem: the target problem keeps its regulariser throughout."""
    from neural_ot._dual_problem import _Problem
    from neural_ot._newton import _newton
    from neural_ot.regularizers import SquaredL2

    rng = np.random.default_rng(0)
    C = th.as_tensor(rng.random((30, 40)) * 10)
    target = SquaredL2(1e-4)
    prob = _Problem(th.full((30,), 1 / 30, dtype=th.float64), th.full((40,), 1 / 40, dtype=th.float64), C, None, target)
    seen = []
    original = _Problem.with_regularizer

    def spy(self, r, **kwargs):
        seen.append(r.reg)
        assert prob.r is target
        return original(self, r, **kwargs)

    _Problem.with_regularizer = spy
    try:
        u, v, n_iter, converged = _newton(prob, 1e-9, 500, 1000, False)
    finally:
        _Problem.with_regularizer = original
    assert seen and all(r > 1e-4 for r in seen)  # the stages ran at larger eps
    assert prob.r is target and converged
    _, T = prob.plan(u, v)
    assert max(prob.errors(T)) <= 1e-9


def test_newton_is_not_converged_when_the_budget_ends_before_the_target_stage():
    from neural_ot._dual_problem import _Problem
    from neural_ot._newton import _newton
    from neural_ot.regularizers import SquaredL2

    C = th.as_tensor(np.random.default_rng(1).random((30, 40)) * 10)
    prob = _Problem(
        th.full((30,), 1 / 30, dtype=th.float64), th.full((40,), 1 / 40, dtype=th.float64), C, None, SquaredL2(1e-4)
    )
    *_, converged = _newton(prob, 1e-9, 2, 1000, False)
    assert not converged


@pytest.mark.parametrize("continuation", [30.0, 1000.0])
def test_working_set_newton_matches_the_full_newton_even_from_a_cold_coarse_stage(monkeypatch, continuation):
    """The L2 working set (forced on a small problem) gives the full Newton's plan, at any continuation ratio.

    At ratio 1000 the first stage starts cold on a working set (active pairs and the top candidates of each row and
    column) that cannot carry all the mass: Newton on it must not run off on an unbounded restricted dual.
    """
    from neural_ot import _newton

    rng = np.random.default_rng(0)
    n = 300  # every row's nearest targets are the same few: the cold working set cannot carry the mass
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 5.0
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    M /= M.max()
    reg = 0.01 / (2 * n * n)  # POT's reg 0.01 in the density convention
    monkeypatch.setattr(_newton, "_CONTINUATION", continuation)
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 10**12)
    full = no.solve(M, reg=reg, tol=1e-11)
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 0)
    monkeypatch.setattr(_newton, "_WORKING_SET_K", 2)
    working = no.solve(M, reg=reg, tol=1e-11)
    assert full.status == working.status == "converged"
    assert working.marginal_error <= 1e-11
    assert np.abs(working.plan - full.plan).sum() < 1e-8  # both to 1e-11 marginal error: the same plan


@pytest.mark.parametrize("shape", [(250, 250), (120, 800)])
def test_cpu_problems_above_the_numpy_stages_limit_take_a_working_set(monkeypatch, shape):
    """On the CPU, L2 stages too large for the numpy stage run a working set, whatever their size: the full matrix's
    plan, on a sub-problem of a few pairs per point. (An accelerator keeps the full matrix below 250,000 pairs.)"""
    from neural_ot import _dual_problem, _newton

    n, m = shape
    assert min(n, m) ** 2 * max(n, m) > _newton._NUMPY_STAGE_WORK and n * m < _newton._WORKING_SET_MIN_PAIRS_ACCELERATOR
    M = normalized_cost(*point_clouds(np.random.default_rng(4), n, m))
    reg = 0.1 / (2 * n * m)  # POT's reg 0.1: a few pairs per point active
    sizes = []
    sparse = _dual_problem._SparseProblem

    def spy(full, rows, cols, flat=None):
        sizes.append(len(rows))
        return sparse(full, rows, cols, flat)

    monkeypatch.setattr(_newton, "_SparseProblem", spy)
    working = no.solve(M, reg=reg, tol=1e-11)
    assert sizes and max(sizes) < 0.25 * n * m
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 10**12)
    del sizes[:]
    full = no.solve(M, reg=reg, tol=1e-11)
    assert not sizes
    assert full.status == working.status == "converged"
    assert np.abs(working.plan - full.plan).sum() < 1e-8


def test_candidate_pairs_are_the_distinct_allowed_best_pairs_of_rows_and_columns():
    """The working set's cheap feasibility check runs on these pairs: each row's and column's k best, no masked one."""
    from neural_ot._working_set import _candidate_pairs

    rng = np.random.default_rng(3)
    z = th.as_tensor(rng.normal(size=(7, 9)))
    z[rng.random((7, 9)) < 0.4] = -float("inf")  # masked pairs
    k = 3
    best_cols, best_rows = th.topk(z, k, dim=1).indices, th.topk(z, k, dim=0).indices
    rows, cols = _candidate_pairs(z, best_cols, best_rows)
    got = list(zip(rows.tolist(), cols.tolist()))
    expected = {(i, int(j)) for i in range(7) for j in best_cols[i]} | {(int(i), j) for j in range(9) for i in best_rows[:, j]}
    assert len(got) == len(set(got))  # distinct: the max-flow graph sums duplicate edges
    assert set(got) == {(i, j) for i, j in expected if z[i, j] > -float("inf")}


def test_masked_problem_on_a_working_set_matches_the_full_newton(monkeypatch):
    """A masked L2 problem on a forced working set with 2 candidates per row and column: the full Newton's plan."""
    from neural_ot import _newton

    rng = np.random.default_rng(4)
    n = 120
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    M /= M.max()
    mask = (rng.random((n, n)) < 0.3).astype(float)
    np.fill_diagonal(mask, 1.0)  # a plan exists on the mask
    reg = 0.01 / (2 * n * n)
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 10**12)
    full = no.solve_discrete(None, None, M, reg, mask=mask, tol=1e-11)
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 0)
    monkeypatch.setattr(_newton, "_WORKING_SET_K", 2)
    working = no.solve_discrete(None, None, M, reg, mask=mask, tol=1e-11)
    assert full.status == working.status == "converged"
    assert float(np.abs(working.plan[mask == 0]).sum()) == 0.0
    assert np.abs(working.plan - full.plan).sum() < 1e-8


def test_a_stalled_solve_stops_early_with_an_honest_status():
    # Costs of order 1e6 at reg 1e-3: float64 cannot resolve the marginals below about 1e-8, so `tol` 1e-9 is out of
    # reach. Before stall detection every iteration of `max_iter` was spent there.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(50, 2))
    M = ((x[:, None] - y[None]) ** 2).sum(-1) * 1e6
    with pytest.warns(RuntimeWarning, match="stalled .* within the float64 rounding floor of this plan"):
        res = no.solve_discrete(None, None, M, 1e-3, "entropic", max_iter=300)
    assert res.status == "stalled" and not res.converged and res.stalled
    assert res.n_iter < 300
    assert max(res.marginal_errors) < 1e-6  # it stopped at the floor, not somewhere far from the optimum
    # A solvable problem is not mistaken for a stall, and a budget too small is still reported as such.
    ok = no.solve_discrete(None, None, M / 1e6, 1e-3, "entropic")
    assert ok.status == "converged" and not ok.stalled
    with pytest.warns(RuntimeWarning, match="did not reach") as caught:
        short = no.solve_discrete(None, None, M / 1e6, 1e-4, "l2", max_iter=2)
    assert short.status == "max_iter"
    assert "rounding floor" not in str(caught[0].message)  # far from the optimum: no floor to blame
    with pytest.warns(RuntimeWarning, match="did not reach") as caught:
        no.solve_discrete(None, None, M / 1e6, 1e-5, "entropic", max_iter=1)
    assert "rounding floor" not in str(caught[0].message)


@pytest.mark.parametrize("reg_type", ["entropic", "l2"])
def test_a_budget_spent_in_a_coarse_stage_gives_a_finite_result(reg_type):
    """`max_iter` used up before the target eps's stage: the coarse stage's potentials overflowed the target's
    entropic plan (a NaN value, raised as "badly scaled"); exact block steps at the target now make every column
    carry its mass, and the status says the budget ran out."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(50, 2))
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    for reg, budget in ((1e-5, 1), (1e-6, 2)):
        with pytest.warns(RuntimeWarning, match="did not reach"):
            res = no.solve_discrete(None, None, M, reg, reg_type, max_iter=budget)
        assert res.status == "max_iter" and res.n_iter == budget and np.isfinite(res.value) and np.isfinite(res.plan).all()
        assert res.marginal_errors[1] < 1e-9  # the last block step: columns exact


def test_near_the_unregularised_limit_a_stall_is_at_the_rounding_floor_and_says_so():
    """L2 at reg 1e-12 on unit costs: rounding u + v - M alone moves the plan by up to ~1e-7, so tol 1e-9 is out of
    reach; the solve stalls at ~1e-8 with the exact OT plan (POT's network simplex) to that precision, and the
    warning says that a tol below the floor cannot be met."""
    for seed in range(2):
        M = np.random.default_rng(seed).uniform(size=(200, 150))
        floor = r"within the float64 rounding floor of this plan \(up to 1e-07 at reg=1e-12\)"
        with pytest.warns(RuntimeWarning, match=floor):
            res = no.solve_discrete(None, None, M, 1e-12)
        assert res.status == "stalled" and 1e-9 < res.marginal_error < 1e-7
        exact = ot.emd(np.full(200, 1 / 200), np.full(150, 1 / 150), M)
        assert np.abs(res.plan - exact).sum() < 1e-7
        assert abs(res.value_linear - float((exact * M).sum())) < 1e-9
        # one reg up, the floor is about tol, and the solve meets it
        assert no.solve_discrete(None, None, M, 1e-10).status == "converged"


def test_masked_entropic_matches_pot_sinkhorn_with_a_large_cost_on_masked_pairs(rng):
    # Entropic OT with a mask is the limit of Sinkhorn on a cost made large where the mask is 0: exp(-big / eps)
    # vanishes in float64 once big / eps is a few hundred, so POT's Sinkhorn is an independent reference.
    n, m, eps = 40, 40, 0.05
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    pairs = [(0, 5), (3, 3), (10, 20), (39, 0)]
    mask = no.keypoint_mask(n, m, pairs)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    ours = no.solve_discrete(a, b, M, eps, reg_type="entropic", mask=mask, tol=1e-11)
    ref = ot.sinkhorn(a, b, M + 50.0 * (1 - mask), eps, stopThr=1e-13, numItermax=200_000)
    assert ours.converged
    assert np.abs(ours.plan - ref).sum() < 1e-8
    assert ours.plan[mask == 0].max() == 0.0  # exactly zero where masked, where POT's is only tiny
    for i, j in pairs:
        assert ours.plan[i, j] == pytest.approx(1 / n, rel=1e-9)


@pytest.mark.parametrize("target", [1e-5, 2e-3, 1.0])
@pytest.mark.parametrize("max_iter", [1, 30])
def test_l2_row_roots_agree_with_a_brute_force_root_on_every_path(target, max_iter, monkeypatch):
    """Partial sort, Newton and the sort fallback (max_iter=1 forces it) give the root of each row."""
    from neural_ot import regularizers

    newton = regularizers._newton_roots
    monkeypatch.setattr(regularizers, "_newton_roots", lambda t, w, tg: newton(t, w, tg, max_iter=max_iter))
    gen = th.Generator().manual_seed(0)
    # 40: a full sort (numpy's, with equal weights its values-only sort); 300: a partial sort, then Newton (and its
    # sort fallback at max_iter=1)
    for m, equal in ((40, False), (40, True), (300, False), (300, True)):
        t = th.rand(50, m, generator=gen, dtype=th.float64)
        w = th.full((m,), 1.0 / m, dtype=th.float64) if equal else th.rand(m, generator=gen, dtype=th.float64) + 0.1
        active = th.rand(50, m, generator=gen) > 0.3
        s = regularizers.l2_row_roots(t, w, active, target)
        value = (w * th.where(active, (s[:, None] - t).clamp_min(0), 0.0)).sum(1)
        th.testing.assert_close(value, th.full_like(value, target), rtol=1e-10, atol=1e-14)


def test_row_sorts_in_numpy_and_torch_agree_and_keep_the_gradient():
    """The CPU sort of the L2 row roots runs in numpy outside autograd; torch's (differentiable) gives the same."""
    from neural_ot import regularizers

    gen = th.Generator().manual_seed(1)
    t = th.randn(30, 64, generator=gen, dtype=th.float64)
    t[:, 5] = float("inf")  # absent pairs sort last in both
    for w in (th.rand(64, generator=gen, dtype=th.float64) + 0.1, th.full((64,), 0.5, dtype=th.float64)):
        ts, ws = regularizers._sorted_rows(t, w)
        tt, order = th.sort(t, dim=1)
        assert th.equal(ts, tt) and th.equal(ws, w[order])
    leaf = t.clone().requires_grad_(True)
    s = regularizers.l2_row_roots(leaf, w, None, 1.0)  # the torch sort: the roots are differentiable in t
    s.sum().backward()
    assert leaf.grad is not None and th.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    th.testing.assert_close(s.detach(), regularizers.l2_row_roots(t, w, None, 1.0), rtol=0, atol=0)
    # Off the CPU (the meta device stands in for an accelerator) torch sorts: no conversion to numpy, no host wait.
    ts, ws = regularizers._sorted_rows(t.to("meta"), w.to("meta"))
    assert ts.device.type == ws.device.type == "meta" and ts.shape == ws.shape == t.shape
    # bfloat16 (OTPR's pairs on CPUs with bfloat16 matrix instructions) has no numpy dtype: torch sorts it.
    half = t[:, :8].to(th.bfloat16)
    ts, ws = regularizers._sorted_rows(half, w[:8].to(th.bfloat16))
    assert ts.dtype == th.bfloat16 and th.equal(ts, th.sort(half, dim=1).values)


def test_a_fully_active_l2_problem_is_solved_by_the_cold_start_alone(rng):
    """Where every pair is active, the all-active closed form is the optimum: no Newton step, the QP's plan."""
    n, m = 7, 6
    x, y = point_clouds(rng, n, m)
    M = normalized_cost(x, y)
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    res = no.solve_discrete(a, b, M, 2.0)
    T, _ = _l2_qp(a, b, M, 2.0)
    assert res.converged and res.n_iter == 0 and (res.plan > 0).all()
    np.testing.assert_allclose(res.plan, T, atol=1e-6)


@pytest.mark.parametrize("n,continuation", [(600, 30.0), (1000, 30.0), (2000, 30.0), (1000, 100.0)])
def test_the_benchmark_problems_converge_where_the_final_stage_used_to_crawl(monkeypatch, n, continuation):
    """The benchmark's hardest L2 problems (POT reg 0.01) reach 1e-9: a nearly sparse plan, many pairs at the kink.

    Two ways the final stage used to crawl. The active graph can be a forest whose trees carry unequal mass: the
    Newton system is then nearly singular and its step is rejected at every length (block steps alone stalled at
    9e-8 at n = 1000 and 4e-8 at n = 2000); a rejected step is retried with more Levenberg damping. And with
    curvature on the active pairs only, every step flipped the pairs at the kink z = 0 in and out of the active set
    and was rejected: n = 600 stalled at 1.95e-9, and n = 1000 at continuation ratio 100 at 2.5e-8; pairs just
    below the kink now carry curvature too.
    """
    from neural_ot import _newton

    monkeypatch.setattr(_newton, "_CONTINUATION", continuation)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    M = ot.dist(x, y)
    M /= M.max()
    a = np.full(n, 1.0 / n)
    res = no.solve_discrete(a, a, M, 0.01 / (2 * n * n))
    assert res.status == "converged" and res.marginal_error <= 1e-9
    assert (res.plan == 0).mean() > 0.99


@pytest.mark.parametrize("shape", [(60, 60), (100, 80), (300, 300)])
def test_tied_costs_converge_on_a_working_set_and_match_the_full_newton(monkeypatch, shape):
    """Integer costs (ties everywhere, a degenerate optimum) on a forced working set: converged, the full plan."""
    from neural_ot import _newton

    n, m = shape
    rng = np.random.default_rng(1)
    M = rng.integers(0, 5, size=(n, m)).astype(float) / 4
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    a, b = a / a.sum(), b / b.sum()
    for reg in (1e-2, 1e-3):
        eps = reg / (2 * n * m)
        monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 10**12)
        full = no.solve_discrete(a, b, M, eps)
        monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 0)
        working = no.solve_discrete(a, b, M, eps)
        assert full.status == working.status == "converged"
        assert abs(working.value - full.value) <= 1e-9 * abs(full.value)


def test_a_slow_far_phase_is_not_mistaken_for_a_stall(monkeypatch):
    """From a far start the marginal error is not monotone and can take more than 25 Newton iterations to halve.

    At continuation ratio 1000 the target stage of this problem (10-D clouds, POT reg 1e-3) moves its marginal error
    up and down for 25 iterations while the dual improves at every step: the stall check used to stop it there
    (status "stalled" at 0.24). A stall now also needs the dual to have stopped improving.
    """
    from neural_ot import _newton

    monkeypatch.setattr(_newton, "_CONTINUATION", 1000.0)
    rng = np.random.default_rng(0)
    n = 300
    x, y = rng.normal(size=(n, 10)), rng.normal(size=(n, 10)) + 0.5
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    M /= M.max()
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, n)
    res = no.solve_discrete(a / a.sum(), b / b.sum(), M, 1e-3 / (2 * n * n))
    assert res.status == "converged" and res.marginal_error <= 1e-9


@pytest.mark.parametrize("fraction", [0.0, 0.03, 0.5, 1.0])
def test_true_pairs_are_torch_nonzero_row_major(fraction):
    # the solver's index lists come from numpy on the CPU; torch.nonzero is the reference (and the GPU path)
    from neural_ot._dual_problem import flat_nonzero, true_pairs

    mask = th.rand(37, 53, generator=th.Generator().manual_seed(3)) < fraction
    flat, rows, cols = true_pairs(mask)
    ref_rows, ref_cols = th.nonzero(mask, as_tuple=True)
    assert flat.dtype == rows.dtype == cols.dtype == th.int64
    assert th.equal(rows, ref_rows) and th.equal(cols, ref_cols) and th.equal(flat, ref_rows * 53 + ref_cols)
    assert th.equal(flat_nonzero(mask.view(-1)), th.nonzero(mask.view(-1)).squeeze(1))


def test_entropic_densities_off_the_support_cannot_overflow_into_nan():
    """At a small entropic reg the density off the support (a zero-weight point's pairs, masked pairs) overflowed to
    inf, and zeroing it by a product made NaN ("solve_discrete produced NaN; the problem is badly scaled" on unit
    costs). It is zeroed by masked_fill: the plan equals the one without the zero-weight point, and masked pairs carry
    nothing."""
    rng = np.random.default_rng(3)
    M = rng.uniform(size=(7, 9))
    a, b = np.full(7, 1 / 6), np.full(9, 1 / 9)
    a[0] = 0.0
    for reg in (1e-8, 1e-6):
        res = no.solve_discrete(a, b, M, reg, "entropic")
        without = no.solve_discrete(a[1:], b, M[1:], reg, "entropic")
        assert res.converged and np.isfinite(res.value) and np.abs(res.plan[1:] - without.plan).sum() < 1e-12
        assert (res.plan[0] == 0).all() and (res.density[0] == 0).all()
    mask = (rng.random((7, 9)) > 0.3).astype(float)
    mask[np.arange(7), np.arange(7)] = mask[np.arange(9) % 7, np.arange(9)] = 1.0
    res = no.solve_discrete(np.full(7, 1 / 7), b, M, 1e-8, "entropic", mask=mask)
    assert res.converged and np.isfinite(res.value) and (res.plan[mask == 0] == 0).all()
