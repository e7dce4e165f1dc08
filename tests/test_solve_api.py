"""`neural_ot.solve`, POT's call form, and the POT-aligned fields of `OTResult`, against POT itself."""

import warnings

import numpy as np
import ot
import pytest
import torch as th

import neural_ot


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    a, b = rng.random(7) + 0.1, rng.random(9) + 0.1
    a, b = a / a.sum(), b / b.sum()
    return rng.random((7, 9)), a, b


def test_entropic_matches_pot_solve(problem):
    M, a, b = problem
    ref = ot.solve(M, a, b, reg=0.05, reg_type="KL", tol=1e-13, max_iter=100_000)
    res = neural_ot.solve(M, a, b, reg=0.05, reg_type="KL", tol=1e-12)
    assert res.status == "converged"
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-9)
    assert res.value == pytest.approx(float(ref.value), abs=1e-9)
    assert res.value_linear == pytest.approx(float(ref.value_linear), abs=1e-9)
    # Potentials are unique up to (u + t, v - t): compare the sums. POT's are log-scalings, plan exp(f + g - M / reg);
    # ours are in cost units with densities relative to a b, plan a b exp((u + v - M) / reg).
    ours = (res.potential_a[:, None] + res.potential_b[None, :]) / 0.05 + np.log(a[:, None] * b[None, :])
    theirs = ref.potential_a[:, None] + ref.potential_b[None, :]
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


def test_l2_matches_pot_smooth_with_the_documented_scaling():
    rng = np.random.default_rng(1)
    n, m, r = 6, 8, 0.5
    M = rng.random((n, m))
    ref = ot.smooth.smooth_ot_dual(np.full(n, 1 / n), np.full(m, 1 / m), M, r, reg_type="l2", stopThr=1e-14, numItermax=20_000)
    res = neural_ot.solve(M, reg=r / (2 * n * m), reg_type="l2", tol=1e-11)
    np.testing.assert_allclose(res.plan, ref, atol=1e-7)


def test_pot_field_names(problem):
    M, a, b = problem
    # The fields mean what POT's mean: checked against ot.solve on the same entropic problem.
    res = neural_ot.solve(M, a, b, reg=0.1, reg_type="KL")
    pot = ot.solve(M, a, b, reg=0.1, reg_type="KL", max_iter=10_000, tol=1e-13)
    for name in ("plan", "marginal_a", "marginal_b"):
        np.testing.assert_allclose(getattr(res, name), getattr(pot, name), atol=1e-9, err_msg=name)
    np.testing.assert_allclose(res.marginals[0], a, atol=1e-9)
    np.testing.assert_allclose(res.marginals[1], b, atol=1e-9)
    assert res.value_linear == pytest.approx(float(pot.value_linear), rel=1e-7)
    assert res.value_linear == pytest.approx(float((M * pot.plan).sum()), rel=1e-7)
    assert res.potentials == (res.potential_a, res.potential_b)
    log = res.log
    assert log["n_iter"] == res.n_iter and log["status"] == res.status and log["marginal_errors"] == res.marginal_errors


def test_solve_is_solve_discrete_with_pot_argument_order(problem):
    M, a, b = problem
    mask = np.ones_like(M)
    mask[0, :3] = 0
    res, ref = neural_ot.solve(M, a, b, reg=0.1, mask=mask), neural_ot.solve_discrete(a, b, M, 0.1, mask=mask)
    np.testing.assert_array_equal(res.plan, ref.plan)
    assert float(np.abs(res.plan[0, :3]).max()) == 0.0


def test_status_reports_an_exhausted_budget(problem):
    M, a, b = problem
    with pytest.warns(RuntimeWarning, match="did not reach"):
        res = neural_ot.solve(M, a, b, reg=1e-4, tol=1e-14, max_iter=1)
    assert res.status == "max_iter" and not res.converged


def test_solve_errors_and_torch_inputs(problem):
    M, a, b = problem
    with pytest.raises(ValueError, match="reg"):
        neural_ot.solve(M, a, b)
    with pytest.raises(ValueError, match="reg_type"):
        neural_ot.solve(M, reg=0.1, reg_type="tsallis")
    res = neural_ot.solve(th.as_tensor(M), reg=0.1)
    assert isinstance(res.plan, th.Tensor) and isinstance(res.marginal_a, th.Tensor)


def test_float32_weights_are_accepted_and_the_returned_plan_s_error_is_reported():
    rng = np.random.default_rng(0)
    M = th.as_tensor(rng.random((300, 70)), dtype=th.float32)
    a, b = th.ones(300) / 300, th.ones(70) / 70  # float32: sums off by their rounding (2e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = neural_ot.solve(M, a=a, b=b, reg=0.1)
    assert res.status == "converged" and res.plan.dtype == th.float32
    T = res.plan.double()
    rows = float((T.sum(1) - a.double()).abs().sum() / a.double().sum())
    cols = float((T.sum(0) - b.double()).abs().sum() / b.double().sum())
    assert res.marginal_error == pytest.approx(max(rows, cols), rel=1e-6)  # the error of what is returned
    with pytest.raises(ValueError, match="equal total mass"):  # a real mismatch is still refused
        neural_ot.solve(M, a=a, b=1.001 * b, reg=0.1)
    exact = neural_ot.solve(M.double(), reg=0.1)
    assert exact.marginal_error <= 1e-9 and float((exact.plan - T).abs().sum()) < 1e-5


def test_pot_spelling_of_the_l2_convention_is_refused_with_the_conversion():
    M = np.random.default_rng(0).random((5, 4))
    with pytest.raises(ValueError, match=r"POT's ot.solve convention.*reg = r / \(2 n m\)"):
        neural_ot.solve(M, reg=0.1, reg_type="L2")
    assert neural_ot.solve(M, reg=0.1, reg_type="KL").reg_type == "entropic"  # POT's "KL" is the same problem


def test_resample_accepts_numpy_like_h_does():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 1
    H = neural_ot.L2Dual(reg=0.5, max_steps=30, batch_size=16, seed=0).fit(x, y).compatibility()
    candidates = rng.normal(size=(6, 3, 2))
    from_numpy = H.resample(x[:6], candidates, generator=th.Generator().manual_seed(0))
    xt, ct = th.as_tensor(x[:6], dtype=th.float32), th.as_tensor(candidates, dtype=th.float32)
    from_torch = H.resample(xt, ct, generator=th.Generator().manual_seed(0))
    assert th.equal(from_numpy.index, from_torch.index)


def test_barycentric_projection_of_a_discrete_plan_matches_pot_formula(problem):
    M, a, b = problem
    y = np.random.default_rng(1).normal(size=(9, 2))
    res = neural_ot.solve(M, a, b, reg=0.05)
    expected = (res.plan / res.plan.sum(1, keepdims=True)) @ y  # POT's ot.da barycentric mapping
    np.testing.assert_allclose(res.barycentric_projection(y), expected, rtol=1e-12)
    tensor = neural_ot.solve(th.as_tensor(M), th.as_tensor(a), th.as_tensor(b), reg=0.05)
    assert isinstance(tensor.barycentric_projection(th.as_tensor(y)), th.Tensor)
    with pytest.raises(ValueError, match="9 rows"):
        res.barycentric_projection(y[:4])


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_warm_start_from_earlier_potentials(reg_type):
    rng = np.random.default_rng(0)
    M = rng.random((120, 90))
    reg = 1e-3 if reg_type == "l2" else 5e-3
    cold = neural_ot.solve(M, reg=reg, reg_type=reg_type)
    again = neural_ot.solve(M, reg=reg, reg_type=reg_type, potentials_init=cold.potentials)
    assert again.status == "converged" and again.n_iter <= 1
    np.testing.assert_allclose(again.plan, cold.plan, atol=1e-12)
    # A nearby problem (the next minibatch of a training loop): the same plan as a cold solve, in fewer iterations.
    M2 = M + 0.01 * rng.random(M.shape)
    near_cold = neural_ot.solve(M2, reg=reg, reg_type=reg_type)
    near_warm = neural_ot.solve(M2, reg=reg, reg_type=reg_type, potentials_init=cold.potentials)
    assert near_warm.status == "converged"
    # Fewer Newton iterations, or as many and fewer Sinkhorn sweeps (entropic problems may need no Newton step).
    assert (near_warm.n_iter, near_warm.n_sinkhorn) < (near_cold.n_iter, near_cold.n_sinkhorn)
    assert np.abs(near_warm.plan - near_cold.plan).sum() < 1e-8
    with pytest.raises(ValueError, match="potentials_init"):
        neural_ot.solve(M, reg=reg, reg_type=reg_type, potentials_init=(cold.potentials[0][:5], cold.potentials[1]))


def test_a_warm_start_from_an_unrelated_problem_is_dropped_for_the_cold_solve():
    # At a small reg, Newton from the potentials of another point cloud (no continuation) took twice the cold solve's
    # iterations; its plan overshoots the marginals far more than a continuation stage's start, so it is dropped.
    # Points moved a little (closer or farther) still start warm, in fewer iterations.
    from neural_ot._dual_problem import _Problem
    from neural_ot.regularizers import SquaredL2

    def cost(seed: int, shift: float = 0.0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 1.0 + shift
        M = ((x[:, None] - y[None]) ** 2).sum(-1)
        return M / M.max()

    eps = 5e-7  # POT reg 0.09
    a = th.full((300,), 1.0 / 300, dtype=th.float64)
    first = neural_ot.solve(cost(0), reg=eps)
    start = tuple(th.as_tensor(p) for p in first.potentials)
    for M, dropped in ((cost(0, shift=0.01), False), (cost(0, shift=-0.1), False), (cost(1), True)):
        overshoot = max(_Problem(a, a, th.as_tensor(M), None, SquaredL2(eps)).marginal_errors(*start))
        assert (overshoot > 300) is dropped, overshoot  # the rule, on both sides of it
        cold = neural_ot.solve(M, reg=eps)
        warm = neural_ot.solve(M, reg=eps, potentials_init=first.potentials)
        assert cold.status == warm.status == "converged"
        if dropped:  # the cold solve itself
            assert warm.n_iter == cold.n_iter and np.array_equal(warm.plan, cold.plan)
        else:
            assert warm.n_iter < cold.n_iter and np.abs(warm.plan - cold.plan).sum() < 1e-7


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_a_constant_added_to_the_costs_moves_only_u_and_the_values(reg_type):
    # A balanced plan is invariant to C + c (c moves into u); the solve runs on C - min C where the offset dominates,
    # so that the rounding of u + v - C stays at the scale of the costs' spread (before: costs 1e6 + [0, 1] at
    # reg 1e-5 stalled at 1.9e-8, and 1e9 + [0, 1] at reg 1e-7 at 1.7e-3).
    rng = np.random.default_rng(3)
    a, b = rng.random(60) + 0.1, rng.random(45) + 0.1
    a, b = a / a.sum(), b / b.sum()
    reg = 1e-5 if reg_type == "l2" else 1e-3
    for offset in (1e6, -1e6):
        big = rng.random((60, 45)) + offset
        small = big - offset  # the same costs as rounded into `big`, without the offset (exact subtraction)
        ref = neural_ot.solve(small, a, b, reg=reg, reg_type=reg_type)
        res = neural_ot.solve(big, a, b, reg=reg, reg_type=reg_type)
        assert ref.status == res.status == "converged" and max(res.marginal_errors) <= 1e-9
        np.testing.assert_allclose(res.plan, ref.plan, atol=1e-11)
        # the values carry the offset times the plan's mass (1 up to the marginal error), and (u + v) moved by it
        moved_value = offset * res.plan.sum()
        assert res.value == pytest.approx(ref.value + moved_value, rel=1e-14)
        assert res.value_linear == pytest.approx(ref.value_linear + moved_value, rel=1e-14)
        assert res.value_dual == pytest.approx(ref.value_dual + offset, rel=1e-12)
        moved = (res.u[:, None] + res.v[None]) - (ref.u[:, None] + ref.v[None])
        np.testing.assert_allclose(moved, offset, rtol=1e-12)
    # constant costs: every plan costs the same and the regulariser picks a b^T
    const = neural_ot.solve(np.full((5, 4), 7.0), reg=1e-9)
    assert const.status == "converged"
    np.testing.assert_allclose(const.plan, np.full((5, 4), 1 / 20), atol=1e-15)
    assert const.value_linear == pytest.approx(7.0, rel=1e-14)
    # gradients by the envelope theorem are taken in the caller's costs: d value / dM is the plan
    M = th.tensor(rng.random((6, 5)) + 1e6, requires_grad=True)
    value = neural_ot.solve(M, reg=0.1, reg_type=reg_type).value
    (gM,) = th.autograd.grad(value, M)
    th.testing.assert_close(gM, neural_ot.solve(M.detach(), reg=0.1, reg_type=reg_type).plan, atol=1e-12, rtol=0)
    assert float(value.detach()) == pytest.approx(neural_ot.solve(M.detach(), reg=0.1, reg_type=reg_type).value)


def test_masked_entropic_matches_pot_sinkhorn_with_a_large_cost_on_masked_pairs():
    rng = np.random.default_rng(2)
    n, m = 30, 25
    M = rng.random((n, m))
    pairs = [(0, 0), (3, 7), (10, 2)]
    mask = neural_ot.keypoint_mask(n, m, pairs)
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    b[[j for _, j in pairs]] = 1.0 / n  # matched keypoints carry equal mass
    free = np.setdiff1d(np.arange(m), [j for _, j in pairs])
    b[free] = (1.0 - len(pairs) / n) / len(free)
    ours = neural_ot.solve(M, a, b, reg=0.05, reg_type="entropic", mask=mask)
    big = M + 1e3 * (1 - np.asarray(mask))  # exp(-1e3 / 0.05) underflows to 0: masked pairs carry nothing
    ref = ot.sinkhorn(a, b, big, 0.05, numItermax=100_000, stopThr=1e-13)
    assert ours.status == "converged"
    np.testing.assert_allclose(ours.plan, ref, atol=1e-9)


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
@pytest.mark.parametrize("masked", [False, True])
def test_value_is_differentiable_by_the_envelope_theorem(reg_type, masked):
    gen = th.Generator().manual_seed(0)
    n, m = 7, 5
    M = th.rand(n, m, dtype=th.float64, generator=gen).requires_grad_(True)
    a = th.rand(n, dtype=th.float64, generator=gen) + 0.2
    a = (a / a.sum()).requires_grad_(True)
    b = th.rand(m, dtype=th.float64, generator=gen) + 0.2
    b = b / b.sum()
    mask = None
    if masked:
        mask = th.ones(n, m, dtype=th.float64)
        mask[0, :2] = 0
    res = neural_ot.solve(M, a, b, reg=0.1, reg_type=reg_type, mask=mask, tol=1e-12)
    assert isinstance(res.value, th.Tensor) and res.value.ndim == 0
    assert float(res.value.detach()) == pytest.approx(
        neural_ot.solve(M.detach(), a.detach(), b, 0.1, reg_type, mask=mask).value, rel=1e-9
    )
    gM, ga = th.autograd.grad(res.value, (M, a))
    th.testing.assert_close(gM, res.plan, atol=1e-12, rtol=0)  # d value / dM is the plan (0 on masked pairs)

    def value(MM, aa):
        return neural_ot.solve(MM.detach(), aa.detach(), b, 0.1, reg_type, mask=mask, tol=1e-12).value

    h = 1e-6
    E = th.zeros(n, m, dtype=th.float64)
    E[2, 3] = h
    assert (value(M + E, a) - value(M - E, a)) / (2 * h) == pytest.approx(float(gM[2, 3]), abs=1e-7)
    d = th.zeros(n, dtype=th.float64)
    d[3], d[4] = h, -h  # a direction that keeps the mass balanced
    assert (value(M, a + d) - value(M, a - d)) / (2 * h) == pytest.approx(float(ga[3] - ga[4]), abs=1e-7)


def test_value_is_a_float_without_gradients():
    M = th.rand(4, 3, dtype=th.float64)
    assert isinstance(neural_ot.solve(M, reg=0.1).value, float)
    with th.no_grad():
        assert isinstance(neural_ot.solve(M.requires_grad_(True), reg=0.1).value, float)
    M32 = th.rand(4, 3, requires_grad=True)
    value = neural_ot.solve(M32, reg=0.1).value
    assert value.dtype == th.float32
    value.backward()
    assert M32.grad is not None and M32.grad.dtype == th.float32
