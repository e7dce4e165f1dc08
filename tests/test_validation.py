"""Bad input raises a clear error naming the argument."""

import warnings

import numpy as np
import pytest
import torch as th

import neural_ot as no

M = np.random.default_rng(0).uniform(size=(4, 5))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"a": np.ones(3) / 3}, ValueError, "`a` has length 3"),
        ({"b": np.ones(4) / 4}, ValueError, "`b` has length 4"),
        ({"a": np.array([0.5, 0.6, -0.1, 0.0])}, ValueError, "`a` has negative weights"),
        ({"a": np.array([0.5, np.nan, 0.25, 0.25])}, ValueError, "`a` contains NaN"),
        ({"a": np.ones(4)}, ValueError, "equal total mass"),
        ({"M": np.where(np.eye(4, 5) > 0, np.nan, M)}, ValueError, "`M` contains NaN"),
        ({"M": np.where(np.eye(4, 5) > 0, np.inf, M)}, ValueError, "`M` contains NaN or infinite"),
        ({"M": M[0]}, ValueError, "`M` must be a 2-D"),
        ({"reg": 0.0}, ValueError, "`reg` must be positive"),
        ({"reg": -1.0}, ValueError, "`reg` must be positive"),
        ({"reg": "big"}, TypeError, "`reg` must be a positive float"),
        ({"reg_type": "tsallis"}, ValueError, "`reg_type` must be one of"),
        ({"mask": np.ones((4, 4))}, ValueError, "`mask` must have shape"),
        (
            {"mask": np.where(np.arange(5) == 0, 0.0, 1.0)[None].repeat(4, 0) * (np.arange(4) != 2)[:, None]},
            ValueError,
            "all-zero rows",
        ),
        ({"mask": np.full((4, 5), 0.5)}, ValueError, "only 0 and 1"),
        ({"tol": 0}, ValueError, "`tol` must be positive"),
        ({"max_iter": 0}, ValueError, "`max_iter` must be >= 1"),
    ],
)
def test_solve_discrete_bad_input(kwargs, error, match):
    args = {"a": None, "b": None, "M": M, "reg": 0.1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        no.solve_discrete(**args)


def test_keypoint_mass_mismatch_is_infeasible():
    mask = no.keypoint_mask(4, 5, [(0, 0)])
    with pytest.raises(ValueError, match="infeasible"):
        no.solve_discrete(None, None, M, 0.1, mask=mask)  # 1/4 != 1/5


def test_stochastic_solver_bad_config():
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        no.L2Dual(0.1, batch_size=0)
    with pytest.raises(ValueError, match="`reg_init`"):
        no.L2Dual(0.1, reg_init=0.01)
    with pytest.raises(ValueError, match="`potentials`"):
        no.L2Dual(0.1, potentials="spline")
    with pytest.raises(ValueError, match="needs keypoints"):
        no.MaskedL2Dual(0.1, max_steps=1).fit(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="equal mass"):
        no.MaskedL2Dual(0.1, max_steps=1).fit(np.zeros((3, 2)), np.ones((4, 2)), pairs=[(0, 0)])
    with pytest.raises(ValueError, match="`keypoint_mass`"):
        no.MaskedL2Dual(0.1, max_steps=1).fit(
            lambda n, g: np.zeros((n, 2)), np.ones((4, 2)), keypoints=(np.zeros((1, 2)), np.ones((1, 2)))
        )


def test_stochastic_fit_checks_the_dimensions_the_cost_compares():
    # Before: a torch shape error from inside the first minibatch step ("mat1 and mat2 shapes cannot be multiplied").
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match="SqEuclidean needs `x` and `y` of the same dimension, got 2 and 3"):
        no.L2Dual(0.1, max_steps=1).fit(x, y)
    with pytest.raises(ValueError, match="got 1 and 3"):  # a 1-D `x` is 30 points of dimension 1
        no.L2Dual(0.1, max_steps=1).fit(x[:, 0], y)
    relation = no.KeypointRelationCost(x[:2], y[:2])
    with pytest.raises(ValueError, match="KeypointRelationCost: `y` against `keypoints_y`: .* got 2 and 3"):
        no.L2Dual(0.1, cost=relation, max_steps=1).fit(x, y[:, :2])
    mixed = no.MixedCost(no.CallableCost(lambda s, a: s[:, :1] - a[:, :1].T), relation, weight=0.5)
    with pytest.raises(ValueError, match="KeypointRelationCost: `x` against `keypoints_x`"):
        no.L2Dual(0.1, cost=mixed, max_steps=1).fit(x[:, :1], y)
    # costs between spaces of different dimensions (OTPR's states and actions) are not restricted
    assert no.L2Dual(0.1, cost=mixed, max_steps=2).fit(x, y).n_steps == 2


def test_compatibility_rejects_points_it_would_misread():
    # Before: a 1-D point broadcast against the MLP's input shift into a (2, 2) matrix of wrong values, NaN points gave
    # NaN H, and points of the wrong dimension a torch shape error.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 1
    H = no.MaskedL2Dual(1e-2, max_steps=5).fit(x, y, pairs=[(0, 0)]).compatibility()
    with pytest.raises(ValueError, match=r"takes points of dimension 2, got shape \(2, 1\) \(a 1-D array"):
        H(x[0], y[0])
    with pytest.raises(ValueError, match=r"takes points of dimension 2, got shape \(30, 3\)$"):
        H(x, np.hstack([y, y[:, :1]]))
    with pytest.raises(ValueError, match="`x` contains NaN or infinite values"):
        H(np.where(x > 1, np.nan, x), y)
    assert H(x[:1], y[:1]).shape == (1, 1)  # one point, as a (1, d) array


def test_nan_inputs_are_named_not_turned_into_numbers():
    # Before: the L2 c-transform of a NaN `v` or `M` was finite (its sorted-row roots skipped the NaN), the
    # density of NaN potentials blamed an overflow of exp, and negative relation vectors gave NaN divergences.
    rng = np.random.default_rng(0)
    C, u, v = rng.random((4, 3)), rng.normal(size=4), rng.normal(size=3)
    for reg_type in ("l2", "entropic"):
        with pytest.raises(ValueError, match="`v` contains NaN or infinite values, or `M` NaN values"):
            no.c_transform(np.where(v > 0, np.nan, v), C, 0.1, reg_type=reg_type)
        with pytest.raises(ValueError, match="`v` contains NaN or infinite values, or `M` NaN values"):
            no.c_transform(v, np.where(C > 0.5, np.nan, C), 0.1, reg_type=reg_type)
        with pytest.raises(ValueError, match="`u` contains NaN or infinite values"):
            no.density(u * np.nan, v, C, 0.1, reg_type=reg_type)
        with pytest.raises(ValueError, match="`M` contains NaN values"):
            no.plan(u, v, C * np.nan, 0.1, reg_type=reg_type)
    # +inf costs stay allowed (a forbidden pair): the c-transform then ignores the pair
    inf_col = C.copy()
    inf_col[:, 0] = np.inf
    np.testing.assert_allclose(no.c_transform(v, inf_col, 0.1), no.c_transform(v[1:], C[:, 1:], 0.1, b=np.full(2, 1 / 3)))
    with pytest.raises(ValueError, match="probability vectors"):
        no.js_divergence_matrix(-np.ones((2, 3)), np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match=r"`M` must be a non-empty \(n, m\) matrix, got shape \(0, 3\)"):
        no.plan(np.zeros(0), v, np.zeros((0, 3)), 0.1)  # was a ZeroDivisionError


def test_dual_objective_names_bad_arguments():
    M = th.rand(4, 3, dtype=th.float64)
    u, v = th.zeros(4, dtype=th.float64), th.zeros(3, dtype=th.float64)
    with pytest.raises(TypeError, match="`M` must be a torch.Tensor"):
        no.dual_objective(u, v, M.numpy(), 0.1)
    with pytest.raises(TypeError, match="`u` has dtype torch.float32"):
        no.dual_objective(u.float(), v, M, 0.1)
    with pytest.raises(TypeError, match="`a` must be a torch.Tensor"):
        no.dual_objective(u, v, M, 0.1, a=np.full(4, 0.25))
    # Valid arguments give the closed form: sum a u + sum b v - sum a_i b_j (u_i + v_j - M_ij)_+^2 / (4 reg).
    ones_u, ones_v = th.ones(4, dtype=th.float64), th.ones(3, dtype=th.float64)
    expected = 2.0 - float(((2.0 - M).clamp_min(0) ** 2).mean()) / (4 * 0.1)
    assert float(no.dual_objective(ones_u, ones_v, M, 0.1)) == pytest.approx(expected, rel=1e-12)


def test_js_divergence_chunk_size_is_validated():
    P = np.full((3, 2), 0.5)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="chunk_size"):
            no.js_divergence_matrix(P, P, chunk_size=bad)
    np.testing.assert_allclose(no.js_divergence_matrix(P, P, chunk_size=1), 0.0, atol=1e-12)


def test_entropic_density_overflow_raises():
    M = np.zeros((2, 2))
    with pytest.raises(FloatingPointError, match="reg"):
        no.density(np.array([800.0, 0.0]), np.zeros(2), M, 1.0, reg_type="entropic")


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_infeasible_mask_is_rejected_up_front(reg_type):
    # Rows 0 and 1 may only use column 0: no row or column is empty, no pair is exclusive, yet no plan exists.
    mask = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=float)
    M = np.random.default_rng(0).uniform(size=(3, 3))
    with pytest.raises(ValueError, match="`mask` admits no transport plan"):
        no.solve_discrete(None, None, M, 0.1, mask=mask, reg_type=reg_type)


def test_feasible_irregular_mask_is_accepted_and_solved():
    n = 12
    mask = np.zeros((n, n))
    for i in range(n):  # a band: not a KPG mask, so the max-flow decides
        mask[i, [i, (i + 1) % n]] = 1
    M = np.random.default_rng(1).uniform(size=(n, n))
    res = no.solve_discrete(None, None, M, 0.1, mask=mask)
    assert res.converged and np.all(res.plan[mask == 0] == 0)
    # a non-uniform b that the band cannot carry: rows i and i-1 are the only sources of column i
    b = np.full(n, 1.0 / n)
    b[0], b[1] = 3.0 / n, 0.5 / n
    b[2:] = (1 - b[0] - b[1]) / (n - 2)
    with pytest.raises(ValueError, match="admits no transport plan"):
        no.solve_discrete(None, b, M, 0.1, mask=mask)


def test_check_matrix_accepts_finite_entries_whose_sum_overflows():
    """Finiteness is proved by the sum when it is finite; an overflowing sum falls back to the entry-wise check."""
    from neural_ot._validation import check_matrix

    huge = th.full((3, 3), 1e308, dtype=th.float64)
    assert not bool(th.isfinite(huge.sum()))
    check_matrix(huge)
    for bad in (float("nan"), float("inf"), -float("inf")):
        M = huge.clone()
        M[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            check_matrix(M)
    M = th.zeros(2, 2, dtype=th.float64)
    M[0, 0], M[1, 1] = float("inf"), -float("inf")  # the sum is NaN
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_matrix(M)


@pytest.mark.parametrize(
    ("reg_type", "hopeless", "resolved", "offset_only"), [("l2", 1e-18, 1e-16, 1e-13), ("entropic", 1e-16, 1e-14, 1e-11)]
)
def test_a_reg_float64_cannot_resolve_is_rejected_up_front(reg_type, hopeless, resolved, offset_only):
    # Below it, u + v - M rounds to more than the plan's density: 500 Newton iterations ended at marginal errors of
    # 1 to 2e28 (200 x 150). Just above it the solve runs and says honestly how far rounding let it get.
    M = np.random.default_rng(0).random((20, 15))
    with pytest.raises(ValueError, match=r"`reg`=1e-\d+ is too small for float64 on costs of magnitude 0.9"):
        no.solve(M, reg=hopeless, reg_type=reg_type)
    with pytest.raises(ValueError, match="too small for float64"):  # a relaxed problem too
        no.solve(M, reg=hopeless, reg_type=reg_type, unbalanced=1.0)
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        res = no.solve(M, reg=resolved, reg_type=reg_type)
    assert res.status in ("stalled", "max_iter") and np.isfinite(res.plan).all()
    # The magnitude is that of the costs as solved: a large constant taken off (balanced) does not count, and a
    # relaxed problem, which is solved on the costs as given, keeps it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # at this reg rounding stops it short of tol
        assert np.isfinite(no.solve(M + 1e6, reg=offset_only, reg_type=reg_type).plan).all()
    with pytest.raises(ValueError, match="on costs of magnitude 1e\\+06"):
        no.solve(M + 1e6, reg=offset_only, reg_type=reg_type, unbalanced=1.0)
