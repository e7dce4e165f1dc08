"""Dual primitives: autograd agrees with the hand-written gradient and Hessian of the Newton solver."""

import numpy as np
import pytest
import torch as th
from conftest import normalized_cost, point_clouds

import neural_ot as no
from neural_ot._dual_problem import _Problem
from neural_ot._newton import _Curvature, _HessianOperator
from neural_ot.regularizers import get_regularizer


def _setup(rng, reg_type, masked=False):
    n, m = 8, 6
    x, y = point_clouds(rng, n, m)
    C = th.tensor(normalized_cost(x, y))
    a = th.tensor(rng.dirichlet(np.ones(n)))
    b = th.tensor(rng.dirichlet(np.ones(m)))
    mask = th.tensor(no.keypoint_mask(n, m, [(0, 1)])) if masked else None
    u = th.tensor(rng.normal(scale=0.3, size=n)) + 0.3
    v = th.tensor(rng.normal(scale=0.3, size=m))
    return a, b, C, mask, u, v


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
@pytest.mark.parametrize("masked", [False, True])
def test_gradient_matches_autograd(rng, reg_type, masked):
    a, b, C, mask, u, v = _setup(rng, reg_type, masked)
    reg = 0.1
    uu, vv = u.clone().requires_grad_(), v.clone().requires_grad_()
    obj = no.dual_objective(uu, vv, C, reg, a, b, mask, reg_type)
    gu, gv = th.autograd.grad(obj, (uu, vv))
    prob = _Problem(a, b, C, mask, get_regularizer(reg, reg_type))
    curv = _Curvature(prob, prob.z(u, v))
    # The solver minimises -dual: its gradient is (T 1 - a, T^T 1 - b).
    th.testing.assert_close(-gu, curv.row_mass - a)
    th.testing.assert_close(-gv, curv.col_mass - b)
    th.testing.assert_close(float(-obj), prob.loss(u, v))


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_hessian_product_matches_autograd(rng, reg_type):
    a, b, C, mask, u, v = _setup(rng, reg_type)
    reg = 0.1
    prob = _Problem(a, b, C, mask, get_regularizer(reg, reg_type))
    curv = _Curvature(prob, prob.z(u, v))
    n, m = C.shape
    free = th.ones(n, dtype=th.bool), th.ones(m, dtype=th.bool)
    op = _HessianOperator(curv, 0.0, *free)
    d = th.tensor(rng.normal(size=n + m))

    def loss(w):
        return -no.dual_objective(w[:n], w[n:], C, reg, a, b, None, reg_type)

    _, hvp = th.autograd.functional.hvp(loss, th.cat([u, v]), d)
    th.testing.assert_close(op(d), hvp)


def test_gradcheck_dual_objective(rng):
    a, b, C, _, u, v = _setup(rng, "entropic")
    uu, vv = u.clone().requires_grad_(), v.clone().requires_grad_()
    assert th.autograd.gradcheck(lambda p, q: no.dual_objective(p, q, C, 0.5, a, b, reg_type="entropic"), (uu, vv))


def test_module_potentials_and_plan_functions(rng):
    x, y = point_clouds(rng, 10, 7)
    M = normalized_cost(x, y)
    res = no.solve_discrete(None, None, M, 0.05)
    np.testing.assert_allclose(no.plan(res.u, res.v, M, 0.05), res.plan, atol=1e-14)
    np.testing.assert_allclose(no.density(res.u, res.v, M, 0.05), res.density, atol=1e-12)
    rows, cols = no.plan_marginals(res.u, res.v, M, 0.05, chunk_size=3)
    np.testing.assert_allclose(rows, res.plan.sum(1), atol=1e-14)
    np.testing.assert_allclose(cols, res.plan.sum(0), atol=1e-14)

    class Table(th.nn.Module):
        def __init__(self, values):
            super().__init__()
            self.values = th.nn.Parameter(th.tensor(values))

        def forward(self, idx):
            return self.values[idx.long().squeeze(-1)]

    xi, yi = th.arange(10)[:, None], th.arange(7)[:, None]
    Mt = th.tensor(M)
    obj_mod = no.dual_objective(Table(res.u), Table(res.v), Mt, 0.05, x=xi, y=yi)
    obj_tab = no.dual_objective(th.tensor(res.u), th.tensor(res.v), Mt, 0.05)
    assert float(obj_mod) == pytest.approx(float(obj_tab))
    assert float(obj_tab) == pytest.approx(res.value_dual, rel=1e-12)
    with pytest.raises(ValueError, match="`u` is a module"):
        no.dual_objective(Table(res.u), th.tensor(res.v), Mt, 0.05)


@pytest.mark.parametrize("path", ["dense", "csr", "index_add"])
@pytest.mark.parametrize("masked", [False, True])
def test_sparse_and_masked_hessian_products_match_autograd(rng, path, masked, monkeypatch):
    """Every product path of the L2 Newton matrix (dense W, scipy CSR, torch index_add), masked or not."""
    n, m, reg = 60, 50, 0.05
    x, y = point_clouds(rng, n, m)
    C = th.tensor(normalized_cost(x, y))
    a, b = th.tensor(rng.dirichlet(np.ones(n))), th.tensor(rng.dirichlet(np.ones(m)))
    mask = th.tensor(no.keypoint_mask(n, m, [(0, 1), (5, 7)])) if masked else None
    # Potentials that activate most pairs (dense path) or about 10% of them (sparse paths).
    offset = float(C.quantile(0.9 if path == "dense" else 0.1))
    u = th.tensor(rng.normal(scale=1e-3, size=n)) + offset
    v = th.tensor(rng.normal(scale=1e-3, size=m))
    if path == "index_add":
        monkeypatch.setattr(_HessianOperator, "csr", property(lambda self: None))
    prob = _Problem(a, b, C, mask, get_regularizer(reg, "l2"))
    curv = _Curvature(prob, prob.z(u, v))
    assert curv.dense == (path == "dense")
    support = curv.W > 0 if curv.dense else curv.active  # the dense case keeps its 0/1 support in its factors only
    assert support is not None and 0 < int(support.sum()) < n * m
    op = _HessianOperator(curv, 0.0, th.ones(n, dtype=th.bool), th.ones(m, dtype=th.bool))
    if path == "csr":
        assert op.csr is not None
    d = th.tensor(rng.normal(size=n + m))

    def loss(w):
        return -no.dual_objective(w[:n], w[n:], C, reg, a, b, mask, "l2")

    _, hvp = th.autograd.functional.hvp(loss, th.cat([u, v]), d)
    th.testing.assert_close(op(d), hvp)


def test_conjugate_gradients_solve_the_newton_system(rng):
    """The CG loop of the Newton solver reaches the requested rtol and the dense solution."""
    from neural_ot._newton import _pcg

    n, m, reg = 120, 100, 0.05
    x, y = point_clouds(rng, n, m)
    C = th.tensor(normalized_cost(x, y))
    a, b = th.tensor(rng.dirichlet(np.ones(n))), th.tensor(rng.dirichlet(np.ones(m)))
    u, v = th.full((n,), float(C.quantile(0.3))), th.zeros(m, dtype=th.float64)
    curv = _Curvature(
        _Problem(a, b, C, None, get_regularizer(reg, "l2")),
        _Problem(a, b, C, None, get_regularizer(reg, "l2")).z(u.double(), v),
    )
    op = _HessianOperator(curv, 1e-6, th.ones(n, dtype=th.bool), th.ones(m, dtype=th.bool))
    rhs = th.tensor(rng.normal(size=n + m))
    A = th.stack([op(e) for e in th.eye(n + m, dtype=th.float64)], 1)
    exact = th.linalg.solve(A, rhs)
    sol = _pcg(op, rhs, op.diagonal, 1e-10, 5000)
    assert float((op(sol) - rhs).norm() / rhs.norm()) <= 1e-9
    th.testing.assert_close(sol, exact, rtol=1e-6, atol=1e-8)


def test_coarse_stages_multiply_by_the_active_matrix_in_float32_and_the_target_in_float64(rng):
    """An intermediate continuation stage's dense curvature runs its products in float32, close to the float64 ones."""
    n, m = 120, 100
    x, y = point_clouds(rng, n, m)
    C = th.tensor(normalized_cost(x, y))
    a, b = th.tensor(rng.dirichlet(np.ones(n))), th.tensor(rng.dirichlet(np.ones(m)))
    target = _Problem(a, b, C, None, get_regularizer(0.05, "l2"))
    coarse = target.with_regularizer(get_regularizer(0.05, "l2"), coarse=True)
    u, v = th.full((n,), float(C.quantile(0.5))), th.zeros(m, dtype=th.float64)
    exact, low = _Curvature(target, target.z(u, v), reuse=True), _Curvature(coarse, coarse.z(u, v), reuse=True)
    assert exact.dense and low.dense
    assert exact._factors[0].dtype == th.float64 and low._factors[0].dtype == th.float32
    xu, xv = th.tensor(rng.normal(size=n)), th.tensor(rng.normal(size=m))
    for got, want in zip(low.w_products(xu, xv), exact.w_products(xu, xv), strict=True):
        assert got.dtype == th.float64
        th.testing.assert_close(got, want, rtol=1e-5, atol=1e-7 * float(want.abs().max()))
    th.testing.assert_close(low.d1, exact.d1, rtol=1e-6, atol=0.0)
    th.testing.assert_close(low.row_mass, exact.row_mass, rtol=1e-12, atol=0.0)  # the masses stay float64


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
@pytest.mark.parametrize("reg", [1e-3, 1e-1, 3.0])
def test_c_transform_of_the_optimal_v_is_the_optimal_u(reg_type, reg):
    """At the optimum u is the c-transform of v (first-order condition in u): checked against solve_discrete."""
    rng = np.random.default_rng(0)
    M = rng.random((40, 30))
    a, b = rng.random(40) + 0.1, rng.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum()
    res = no.solve_discrete(a, b, M, reg, reg_type, tol=1e-12)
    u = no.c_transform(res.v, M, reg, b=b, reg_type=reg_type)
    np.testing.assert_allclose(u, res.u, atol=1e-8, rtol=0)


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_c_transform_gives_exact_rows_and_maximises_the_dual_in_u(reg_type):
    """For any v: rows of the plan sum to a exactly, and no other u has a larger dual value (it is the argmax)."""
    rng = np.random.default_rng(1)
    M = th.as_tensor(rng.random((25, 20)))
    v = th.as_tensor(rng.normal(size=20))
    a = th.full((25,), 1 / 25, dtype=th.float64)
    mask = th.as_tensor(no.keypoint_mask(25, 20, [(0, 3), (4, 7)]))
    u = no.c_transform(v, M, 0.05, mask=mask, reg_type=reg_type)
    rows, _ = no.plan_marginals(u, v, M, 0.05, a, reg_type=reg_type, mask=mask)
    th.testing.assert_close(rows, a, rtol=1e-10, atol=0)
    best = no.dual_objective(u, v, M, 0.05, a, mask=mask, reg_type=reg_type)
    for scale in (1e-3, 1e-2, 1e-1):
        other = u + scale * th.as_tensor(rng.normal(size=25))
        assert float(no.dual_objective(other, v, M, 0.05, a, mask=mask, reg_type=reg_type)) < float(best)
    # A state-only shift of the cost moves u by the same shift and leaves the plan unchanged.
    shift = th.as_tensor(rng.normal(size=25))[:, None]
    th.testing.assert_close(no.c_transform(v, M + shift, 0.05, mask=mask, reg_type=reg_type), u + shift[:, 0])


def test_c_transform_rejects_rows_without_mass():
    M = np.zeros((3, 2))
    with pytest.raises(ValueError, match="no column of positive weight"):
        no.c_transform(np.zeros(2), M, 0.1, mask=np.array([[1, 0], [0, 0], [1, 1]]))
    with pytest.raises(ValueError, match="`v` has 3 entries"):
        no.c_transform(np.zeros(3), M, 0.1)
    with pytest.raises(ValueError, match="`b` must be"):
        no.c_transform(np.zeros(2), M, 0.1, b=np.array([0.5, -0.5]))
