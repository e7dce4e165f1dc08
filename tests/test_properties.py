"""Property tests: marginals, transpose symmetry, invariance under scaling the cost and eps together."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import neural_ot as no

problems = st.tuples(st.integers(2, 12), st.integers(2, 12), st.integers(0, 10_000), st.sampled_from([1e-3, 1e-2, 1e-1, 1.0]))


def _problem(n, m, seed):
    rng = np.random.default_rng(seed)
    M = rng.uniform(0, 1, size=(n, m))
    a = rng.dirichlet(np.ones(n))
    b = rng.dirichlet(np.ones(m))
    return a, b, M


@settings(max_examples=40, deadline=None)
@given(problems, st.sampled_from(["l2", "entropic"]))
def test_marginals_and_positivity(problem, reg_type):
    n, m, seed, eps = problem
    a, b, M = _problem(n, m, seed)
    res = no.solve_discrete(a, b, M, eps, reg_type=reg_type)
    assert res.converged
    assert np.all(res.plan >= 0)
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-9)
    np.testing.assert_allclose(res.plan.sum(0), b, atol=1e-9)
    assert np.isfinite(res.duality_gap) and np.isfinite(res.value)
    assert abs(res.duality_gap) <= 1e-8 * max(1.0, abs(res.value))


@settings(max_examples=30, deadline=None)
@given(problems)
def test_transpose_symmetry(problem):
    n, m, seed, eps = problem
    a, b, M = _problem(n, m, seed)
    # Solved well below the comparison tolerance: values differ by about (marginal error) x (cost range).
    res = no.solve_discrete(a, b, M, eps, tol=1e-12)
    res_t = no.solve_discrete(b, a, M.T, eps, tol=1e-12)
    np.testing.assert_allclose(res_t.plan, res.plan.T, atol=1e-9)
    assert res_t.value == pytest.approx(res.value, rel=1e-9, abs=1e-12)  # the same problem, transposed


@settings(max_examples=30, deadline=None)
@given(problems, st.sampled_from([0.01, 7.0, 300.0]), st.sampled_from(["l2", "entropic"]))
def test_scaling_cost_and_eps_together(problem, s, reg_type):
    n, m, seed, eps = problem
    a, b, M = _problem(n, m, seed)
    res = no.solve_discrete(a, b, M, eps, reg_type=reg_type)
    res_s = no.solve_discrete(a, b, s * M, s * eps, reg_type=reg_type)
    np.testing.assert_allclose(res_s.plan, res.plan, atol=1e-9)
    np.testing.assert_allclose(res_s.value, s * res.value, rtol=1e-7, atol=1e-12 * s)


@settings(max_examples=40, deadline=None)
@given(
    mismatch=st.floats(min_value=0.0, max_value=1e-6),
    tol=st.sampled_from([1e-9, 1e-7, 1e-5]),
    seed=st.integers(0, 10_000),
)
def test_converged_means_marginal_errors_within_tol(mismatch, tol, seed):
    """The OTResult contract: converged <=> max(marginal_errors) <= tol, whatever the weights' mass mismatch."""
    assume(abs(mismatch - tol) > 1e-3 * tol)  # at the boundary itself, float rounding decides
    rng = np.random.default_rng(seed)
    n, m = 7, 5
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    a, b = a / a.sum(), b / b.sum() * (1 + mismatch)
    M = rng.uniform(size=(n, m))
    if mismatch > tol:
        with pytest.raises(ValueError, match="equal total mass"):
            no.solve_discrete(a, b, M, 0.05, tol=tol)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = no.solve_discrete(a, b, M, 0.05, tol=tol)
    assert res.converged == (max(res.marginal_errors) <= tol)
