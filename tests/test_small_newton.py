"""The numpy Newton of small CPU L2 problems against the torch stage it replaces, and its hand-over to it."""

import numpy as np
import ot
import pytest
import torch as th

import neural_ot as no
from neural_ot import _newton, _small_newton


def _clouds(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
    M = ot.dist(x, y)
    return M / M.max()


def _case(name):
    rng = np.random.default_rng(1)
    if name == "masked":
        M = _clouds(90, 90)
        mask = no.keypoint_mask(90, 90, [(0, 5), (3, 3), (40, 20)])
        return M, None, None, 1e-3, mask
    if name == "rectangular, weighted":
        a, b = rng.random(80) + 0.1, rng.random(130) + 0.1
        return _clouds(80, 130), a / a.sum(), b / b.sum(), 1e-4, None
    reg = {"dense": 0.05, "two stages": 1e-5, "three stages": 1e-7}[name]
    return _clouds(120, 120), None, None, reg, None


def _spy(monkeypatch):
    calls = []
    run = _small_newton.dense_l2_newton

    def spy(*args, **kwargs):
        out = run(*args, **kwargs)
        calls.append(out[2:])
        return out

    monkeypatch.setattr(_newton, "dense_l2_newton", spy)
    return calls


@pytest.mark.parametrize("name", ["dense", "two stages", "three stages", "masked", "rectangular, weighted"])
def test_numpy_stages_reach_the_torch_stages_optimum(monkeypatch, name):
    M, a, b, reg, mask = _case(name)
    calls = _spy(monkeypatch)
    fast = no.solve_discrete(a, b, M, reg, mask=mask, tol=1e-11)
    assert calls and all(converged for _, converged in calls)  # every stage by numpy, none handed over
    with monkeypatch.context() as m:
        m.setattr(_newton, "_numpy_stage", _newton._newton_stage)
        calls.clear()
        ref = no.solve_discrete(a, b, M, reg, mask=mask, tol=1e-11)
    assert not calls
    assert fast.status == ref.status == "converged"
    assert np.abs(fast.plan - ref.plan).sum() < 1e-9
    assert fast.value == pytest.approx(ref.value, rel=1e-9)
    assert fast.n_iter <= ref.n_iter + 2  # the same Newton method, not a slower one


def test_numpy_stage_matches_pot_on_a_dense_problem():
    M = _clouds(100, 100)
    a = np.full(100, 0.01)
    res = no.solve(M, a, a, reg=0.05, tol=1e-12)
    ref = ot.smooth.smooth_ot_dual(a, a, M, 2 * 0.05 * 100 * 100, reg_type="l2", stopThr=1e-14, numItermax=20_000)
    assert res.status == "converged"
    assert np.abs(res.plan - ref).sum() < 1e-6  # POT's own marginal error, about 1e-7


def test_the_torch_stage_continues_where_the_numpy_stage_gives_up(monkeypatch):
    M, a, b, reg, mask = _case("two stages")
    ref = no.solve_discrete(a, b, M, reg, tol=1e-11)
    calls = _spy(monkeypatch)
    monkeypatch.setattr(_small_newton, "_LINE_SEARCH_STEPS", 0)  # every step rejected: numpy gives up at once
    res = no.solve_discrete(a, b, M, reg, tol=1e-11)
    assert calls and not any(converged for _, converged in calls)
    assert res.status == "converged"
    assert np.abs(res.plan - ref.plan).sum() < 1e-9


def test_an_isolated_point_is_handed_to_the_torch_stage(monkeypatch):
    # A warm start with row 0 far below every cost: it carries no mass and has no curvature, which the Schur
    # complement cannot take; the torch stage's block step repairs it.
    M, a, b, reg, mask = _case("dense")
    ref = no.solve(M, reg=reg)
    u, v = th.as_tensor(ref.potentials[0]).clone(), th.as_tensor(ref.potentials[1])
    u[0] = -10.0
    calls = _spy(monkeypatch)
    res = no.solve(M, reg=reg, potentials_init=(u.numpy(), v.numpy()))
    assert calls == [(0, False)]
    assert res.status == "converged"
    assert np.abs(res.plan - ref.plan).sum() < 1e-8


def test_numpy_newton_runs_up_to_its_size_only(monkeypatch):
    # Any plan up to about 215 x 215; dense-starting ones up to about 330 x 330, sparse ones there take the working set.
    calls = _spy(monkeypatch)
    no.solve(_clouds(200, 200), reg=1e-6)  # two continuation stages, both by numpy
    assert len(calls) == 2
    calls.clear()
    res = no.solve(_clouds(250, 250), reg=0.05)
    assert len(calls) == 1 and calls[0][1] and (res.plan > 0).mean() > 0.9
    calls.clear()
    no.solve(_clouds(250, 250), reg=1e-6)  # several continuation stages, none of them by numpy
    no.solve(_clouds(350, 350), reg=0.05)
    assert not calls
    no.solve(_clouds(250, 250), reg=0.05, mask=no.keypoint_mask(250, 250, [(0, 5), (3, 3)]))
    assert not calls


def test_dense_problems_beyond_the_small_size_reach_the_torch_stages_optimum(monkeypatch):
    M = _clouds(240, 260, seed=8)
    rng = np.random.default_rng(9)
    a, b = rng.uniform(0.5, 1.5, 240), rng.uniform(0.5, 1.5, 260)
    a, b = a / a.sum(), b / b.sum()
    calls, used = _spy(monkeypatch), _count_cg(monkeypatch)
    for reg in (0.05, 0.01):  # about 97% and 60% of the pairs active: CG steps at any density here
        fast = no.solve_discrete(a, b, M, reg, tol=1e-11)
        assert calls == [(fast.n_iter, True)] and len(used) == fast.n_iter
        with monkeypatch.context() as patch:
            patch.setattr(_newton, "_NUMPY_DENSE_WORK", 0)
            ref = no.solve_discrete(a, b, M, reg, tol=1e-11)
        assert len(calls) == 1
        assert fast.status == ref.status == "converged"
        assert np.abs(fast.plan - ref.plan).sum() < 1e-9
        calls.clear(), used.clear()


@pytest.mark.parametrize("n", [5, 127, 128, 200])
def test_cholesky_solve_on_either_side_of_the_lapack_limit(n):
    # Below _LAPACK_MAX rows scipy's LAPACK, from it torch's: the same solution, and None where S is not
    # positive definite (the numpy stage then hands over to the torch stage).
    assert _small_newton._LAPACK_MAX == 128
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, n))
    S = X @ X.T + 0.1 * np.eye(n)
    rhs = rng.normal(size=n)
    x = _small_newton._cholesky_solve(S.copy(), rhs)
    np.testing.assert_allclose(x, np.linalg.solve(S, rhs), rtol=1e-8, atol=0)
    indefinite = S - np.linalg.eigvalsh(S).mean() * np.eye(n)
    assert _small_newton._cholesky_solve(indefinite, rhs) is None


def _count_cg(monkeypatch):
    used = []
    run = _small_newton._cg_step

    def spy(*args):
        used.append(args[0].shape)
        return run(*args)

    monkeypatch.setattr(_small_newton, "_cg_step", spy)
    return used


@pytest.mark.parametrize("n, m", [(160, 160), (120, 190)])
def test_dense_plans_take_cg_steps_to_the_direct_solves_optimum(monkeypatch, n, m):
    # Above _CG_WORK, a plan with most pairs active takes its Newton steps by CG on the whole system: the optimum of
    # the direct (Schur complement) steps, to tol.
    M = _clouds(n, m, seed=3)
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    a, b = a / a.sum(), b / b.sum()
    used = _count_cg(monkeypatch)
    fast = no.solve_discrete(a, b, M, 0.05, tol=1e-11)
    assert used and all(shape == (n, m) for shape in used)
    assert (fast.plan > 0).mean() > _small_newton._CG_FRACTION
    with monkeypatch.context() as patch:
        patch.setattr(_small_newton, "_CG_FRACTION", 2.0)  # never: the direct solve on every step
        used.clear()
        ref = no.solve_discrete(a, b, M, 0.05, tol=1e-11)
    assert not used
    assert fast.status == ref.status == "converged" and max(fast.marginal_errors) <= 1e-11
    assert np.abs(fast.plan - ref.plan).sum() < 1e-9
    assert fast.value == pytest.approx(ref.value, rel=1e-10)


def test_sparse_plans_and_small_problems_keep_the_direct_solve(monkeypatch):
    used = _count_cg(monkeypatch)
    res = no.solve(_clouds(160, 160), reg=1e-4)  # a few pairs per point
    assert res.status == "converged" and (res.plan > 0).mean() < 0.1
    res = no.solve(_clouds(90, 90), reg=0.05)  # dense, but below _CG_WORK
    assert res.status == "converged" and (res.plan > 0).mean() > 0.8
    assert not used


def test_cg_step_solves_the_newton_system():
    rng = np.random.default_rng(0)
    n, m = 30, 40
    A = (rng.uniform(size=(n, m)) > 0.1).astype(float)
    a_s, b = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, m)
    W = a_s[:, None] * A * b[None, :]
    d1, d2 = W.sum(1) + 0.1, W.sum(0) + 0.1
    H = np.block([[np.diag(d1), W], [W.T, np.diag(d2)]])
    r = rng.normal(size=n + m)
    x1, x2 = _small_newton._cg_step(A, a_s, b, d1, d2, r[:n], r[n:], 1e-12)
    np.testing.assert_allclose(np.concatenate([x1, x2]), np.linalg.solve(H, r), rtol=1e-8, atol=1e-10)


def test_the_near_active_band_joins_once_progress_slows(monkeypatch):
    # Dense and fast: the exact active set throughout (one iteration fewer than with the band from the start);
    # the same optimum either way.
    M, reg = _clouds(80, 80, seed=2), 0.05  # below _CG_WORK: direct steps, whose iterations the band alone sets
    calls = _spy(monkeypatch)
    fast = no.solve_discrete(None, None, M, reg, tol=1e-9)
    monkeypatch.setattr(_small_newton, "_BAND_PROGRESS", 0.0)  # the band on every step, as before
    calls.clear()
    banded = no.solve_discrete(None, None, M, reg, tol=1e-9)
    assert calls == [(banded.n_iter, True)]
    assert fast.n_iter < banded.n_iter
    assert np.abs(fast.plan - banded.plan).sum() < 1e-8


def test_numpy_all_active_start_is_the_torch_cold_starts():
    # dense: the closed form, as the torch stage computes it; sparse: None (block steps start closer there)
    for reg, applies in ((0.05, True), (1e-6, False)):
        M = _clouds(70, 90, seed=5)
        rng = np.random.default_rng(6)
        a, b = rng.uniform(0.5, 1.5, 70), rng.uniform(0.5, 1.5, 90)
        a, b = a / a.sum(), b / b.sum()
        start = _small_newton.all_active_start(M, a, b, reg, _newton._ALL_ACTIVE_START)
        prob = _newton._Problem(th.from_numpy(a), th.from_numpy(b), th.from_numpy(M), None, no.regularizers.SquaredL2(reg))
        u, v = _newton._cold_start(prob, th.zeros(70, dtype=th.float64), th.zeros(90, dtype=th.float64))
        assert (start is not None) == applies
        if applies:
            np.testing.assert_allclose(start[0], u.numpy(), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(start[1], v.numpy(), rtol=1e-12, atol=1e-15)


def test_a_dense_stage_above_the_small_limit_computes_its_all_active_start_once(monkeypatch):
    # Above _NUMPY_STAGE_WORK a cold stage runs in numpy only if its all-active start applies; that test's start is
    # the stage's start (it was computed a second time in the stage).
    n = 240
    assert n**3 > _newton._NUMPY_STAGE_WORK and n**3 <= _newton._NUMPY_DENSE_WORK
    M = _clouds(n, n)
    ref = no.solve_discrete(None, None, M, 0.05, tol=1e-11)
    starts, run = [], _small_newton.all_active_start

    def spy(*args):
        out = run(*args)
        starts.append(out is not None)
        return out

    monkeypatch.setattr(_newton, "all_active_start", spy)
    calls = _spy(monkeypatch)
    res = no.solve_discrete(None, None, M, 0.05, tol=1e-11)
    assert starts == [True] and calls  # once, and the numpy stage ran from it
    assert res.status == "converged" and np.abs(res.plan - ref.plan).sum() < 1e-12
