"""Stochastic solvers converge to the exact discrete plan; options behave as documented."""

import os

import numpy as np
import pytest
import torch as th
from conftest import point_clouds

import neural_ot as no

EPS = 0.05
TOL_TABULAR = 0.05  # L1 distance between plans (total mass 1)
TOL_NEURAL = 0.1


def _problem(rng, n=30, m=30):
    x, y = point_clouds(rng, n, m)
    scale = float(((x[:, None] - y[None]) ** 2).sum(-1).max())
    return x, y, no.SqEuclidean(normalize=scale), scale


CONVERGENCE_CASES = {
    # name: (solver class, potentials, reg_type, method, learning rate, steps, plan tolerance, keypoint pairs)
    "tabular-gradient": (no.L2Dual, "tabular", "l2", "gradient", 1e-2, 3000, TOL_TABULAR, None),
    "tabular-exact": (no.L2Dual, "tabular", "l2", "exact", 5e-2, 1500, TOL_TABULAR, None),
    "neural": (no.L2Dual, "mlp", "l2", "gradient", 3e-3, 3000, TOL_NEURAL, None),
    "masked-tabular": (no.MaskedL2Dual, "tabular", "l2", "gradient", 1e-2, 3000, TOL_TABULAR, [(0, 0), (1, 5), (2, 9)]),
    "masked-neural": (no.MaskedL2Dual, "mlp", "l2", "gradient", 3e-3, 3000, TOL_NEURAL, [(0, 0), (1, 5), (2, 9)]),
    "entropic-tabular": (no.EntropicDual, "tabular", "entropic", "gradient", 1e-2, 3000, TOL_TABULAR, None),
    "tabular-semi-dual": (no.L2Dual, "tabular", "l2", "semi-dual", 1e-2, 1500, TOL_TABULAR, None),
    "neural-semi-dual": (no.L2Dual, "mlp", "l2", "semi-dual", 3e-3, 1500, TOL_NEURAL, None),
    "masked-tabular-semi-dual": (
        no.MaskedL2Dual,
        "tabular",
        "l2",
        "semi-dual",
        1e-2,
        1500,
        TOL_TABULAR,
        [(0, 0), (1, 5), (2, 9)],
    ),
    "entropic-tabular-semi-dual": (no.EntropicDual, "tabular", "entropic", "semi-dual", 1e-2, 1500, TOL_TABULAR, None),
}


@pytest.mark.parametrize("case", sorted(CONVERGENCE_CASES))
def test_stochastic_solver_converges_to_the_exact_plan(rng, case):
    """Each solver (gradient ascent, or regression onto exact minibatch potentials) recovers solve_discrete's plan."""
    cls, potentials, reg_type, method, lr, steps, tol, pairs = CONVERGENCE_CASES[case]
    x, y, cost, _ = _problem(rng)
    mask = None if pairs is None else no.keypoint_mask(30, 30, pairs)
    exact = no.solve_discrete(None, None, cost(x, y), EPS, reg_type=reg_type, mask=mask)
    solver = cls(
        EPS,
        cost=cost,
        potentials=potentials,
        hidden_sizes=(64, 64),
        batch_size=30,
        learning_rate=lr,
        lr_schedule="cosine",
        max_steps=steps,
        seed=0,
        dtype=th.float64,
        method=method,
    )
    res = solver.fit(x, y, pairs=pairs)
    u, v = res.potential_values(th.tensor(x, dtype=th.float64), th.tensor(y, dtype=th.float64))
    plan = no.plan(u.double().numpy(), v.double().numpy(), cost(x, y), EPS, reg_type=reg_type, mask=mask)
    assert np.abs(plan - exact.plan).sum() < tol
    if potentials == "tabular":
        assert res.marginal_error < 0.1
    if pairs is not None:
        # The mask matters: the unmasked optimum is far from this plan, and the keypoints carry their mass.
        unmasked = no.solve_discrete(None, None, cost(x, y), EPS)
        assert np.abs(unmasked.plan - exact.plan).sum() > 5 * TOL_TABULAR
        for i, j in pairs:
            assert plan[i, j] == pytest.approx(1 / 30, rel=0.05)


def test_tol_stops_early_and_callback_can_stop(rng):
    x, y, cost, _ = _problem(rng)
    solver = no.L2Dual(
        0.5,
        cost=cost,
        potentials="tabular",
        batch_size=30,
        learning_rate=5e-2,
        max_steps=5000,
        eval_every=50,
        eval_batch_size=256,
        tol=0.1,
        seed=0,
    )
    res = solver.fit(x, y)
    assert res.converged and res.n_steps < 5000 and res.marginal_error <= 0.1
    seen = []
    solver2 = no.L2Dual(EPS, cost=cost, potentials="tabular", max_steps=1000, eval_every=10, seed=0)
    res2 = solver2.fit(x, y, callback=lambda info: seen.append(info["step"]) or len(seen) < 3)
    assert res2.n_steps == 30 and seen == [10, 20, 30]


def test_warm_start_continues_and_reset_restarts(rng):
    x, y, cost, _ = _problem(rng)
    solver = no.L2Dual(EPS, cost=cost, potentials="tabular", batch_size=30, learning_rate=1e-2, max_steps=500, seed=0)
    first = solver.fit(x, y)
    u_before = first.u.values.detach().clone()
    solver.fit(x, y, max_steps=10)
    # 10 more Adam steps of size <= lr move each value by at most about 10 lr (warm start), not a re-initialisation
    assert float((solver.u.values - u_before).abs().max()) <= 12 * 1e-2 and not th.equal(solver.u.values, u_before)
    solver.fit(x, y, max_steps=1, warm_start=False)
    assert solver.u.values.abs().max() < u_before.abs().max()
    assert solver.total_steps == 511


def test_ema_and_continuation_history(rng):
    x, y, cost, _ = _problem(rng)
    solver = no.L2Dual(
        EPS,
        cost=cost,
        potentials="mlp",
        hidden_sizes=(32,),
        batch_size=30,
        max_steps=200,
        ema_decay=0.9,
        reg_init=1.0,
        continuation_fraction=0.5,
        eval_every=50,
        seed=0,
    )
    res = solver.fit(x, y)
    regs = res.history["reg"]
    assert regs[0] == pytest.approx(1.0 * (EPS / 1.0) ** 0.5) and regs[-1] == EPS
    assert res.u is solver.u_ema.module
    assert not any(th.equal(p, q) for p, q in zip(solver.u.parameters(), res.u.parameters()))


def test_ema_is_the_exponential_average_of_the_iterates(rng):
    x, y, cost, _ = _problem(rng)
    solver = no.L2Dual(EPS, cost=cost, hidden_sizes=(16,), batch_size=30, ema_decay=0.8, seed=0, dtype=th.float64)
    solver.setup(x, y)
    expected = None
    for _ in range(5):
        solver.step()
        current = [p.detach().clone() for p in solver.u.parameters()]
        expected = current if expected is None else [0.8 * e + 0.2 * c for e, c in zip(expected, current)]
    for e, q in zip(expected, solver.result().u.parameters()):
        th.testing.assert_close(q, e)


def test_seed_reproducibility_and_state_dict_round_trip(rng):
    x, y, cost, _ = _problem(rng)
    kwargs = dict(cost=cost, hidden_sizes=(16,), batch_size=16, max_steps=50, seed=3)
    r1 = no.L2Dual(EPS, **kwargs).fit(x, y)
    r2 = no.L2Dual(EPS, **kwargs).fit(x, y)
    pts = th.tensor(x, dtype=th.float32)
    th.testing.assert_close(r1.u(pts), r2.u(pts), rtol=0, atol=0)
    solver = no.L2Dual(EPS, **kwargs)
    solver.fit(x, y)
    state = solver.state_dict()
    clone = no.L2Dual(EPS, **kwargs)
    clone.build(2, 2)
    clone.load_state_dict(state)
    th.testing.assert_close(clone.u(pts), solver.u(pts))
    a = solver.fit(x, y, max_steps=5)
    b = clone.fit(x, y, max_steps=5)
    th.testing.assert_close(a.u(pts), b.u(pts))


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak resident set size (Linux)
        f.write("5")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to measure peak memory")
def test_memory_is_per_batch_for_a_million_points():
    """10^6 points in 25-D (200 MB of data): fitting adds memory of the order of a batch, not of the data."""
    gen = th.Generator().manual_seed(0)
    x = th.randn(1_000_000, 25, generator=gen)
    y = th.randn(1_000_000, 25, generator=gen) + 0.5
    data_bytes = x.nbytes + y.nbytes
    solver = no.L2Dual(
        0.1, cost=no.SqEuclidean(normalize="mean"), batch_size=256, max_steps=20, eval_every=10, eval_batch_size=512, seed=0
    )
    solver.fit(x[:1000], y[:1000])  # warm-up: allocator pools, lazy imports
    _reset_peak_rss()
    before = _peak_rss_bytes()
    res = solver.fit(x, y, warm_start=False)
    extra = _peak_rss_bytes() - before
    assert np.isfinite(res.history["objective"]).all() and res.n_steps == 20
    # A copy of the data (e.g. a dtype conversion) would add >= 200 MB; the batches need a few MB.
    assert extra < 0.1 * data_bytes, f"fit used {extra / 2**20:.0f} MiB on top of {data_bytes / 2**20:.0f} MiB of data"


@pytest.mark.parametrize("keypoints", [False, True])
def test_exact_minibatch_targets_match_solve_discrete(rng, keypoints):
    """method='exact' regresses onto the exact minibatch potentials: they are solve_discrete's, shift balanced."""
    x, y, cost, _ = _problem(rng, 40, 35)
    solver = no.L2Dual(EPS, cost=cost, batch_size=16, seed=0, method="exact", dtype=th.float64)
    kp = (x[:3] + 0.01, y[:3] - 0.01) if keypoints else None
    solver.setup(x, y, keypoints=kp, keypoint_mass=0.2 if keypoints else None)
    batch = solver.sample_batch(16)
    u_star, v_star, C = solver.exact_targets(batch, solver.regularizer)
    mask = None if batch.mask is None else batch.mask.numpy()
    ref = no.solve_discrete(batch.wx.numpy(), batch.wy.numpy(), C.numpy(), EPS, mask=mask, tol=1e-9)
    ours = no.plan(u_star.numpy(), v_star.numpy(), C.numpy(), EPS, a=batch.wx.numpy(), b=batch.wy.numpy(), mask=mask)
    np.testing.assert_allclose(ours, ref.plan, atol=1e-6, rtol=0)
    assert float(batch.wx @ u_star) == pytest.approx(float(batch.wy @ v_star), abs=1e-9)  # the balanced shift
    if keypoints:  # each keypoint carries its mass to its own partner only
        np.testing.assert_allclose(np.diag(ours[:3, :3]), batch.wx[:3].numpy(), rtol=1e-6)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method"):
        no.L2Dual(EPS, method="newton")


def test_setup_and_step_equal_fit(rng):
    x, y, cost, _ = _problem(rng, 40, 40)

    def solver():
        return no.L2Dual(EPS, cost=cost, batch_size=16, max_steps=25, seed=3, dtype=th.float64)

    fitted = solver()
    fitted.fit(x, y, evaluate=False)
    stepped = solver()
    with pytest.raises(RuntimeError, match="setup"):
        stepped.step()
    stepped.setup(x, y)
    objectives = [stepped.step() for _ in range(25)]
    assert all(isinstance(o, th.Tensor) and o.ndim == 0 for o in objectives)
    assert stepped.total_steps == fitted.total_steps == 25
    for p, q in zip([*fitted.u.parameters(), *fitted.v.parameters()], [*stepped.u.parameters(), *stepped.v.parameters()]):
        th.testing.assert_close(p, q, rtol=0, atol=0)
    assert np.isfinite(stepped.evaluate())


def test_sample_batch_with_its_own_generator_leaves_training_unchanged(rng):
    x, y, cost, _ = _problem(rng, 40, 40)
    solver = no.L2Dual(EPS, cost=cost, batch_size=8, seed=0, dtype=th.float64)
    with pytest.raises(RuntimeError, match="setup"):
        solver.sample_batch(4)
    solver.setup(x, y, keypoints=(x[:2], y[:2]), keypoint_mass=0.2)
    state = solver._generator.get_state()
    batch = solver.sample_batch(6, th.Generator().manual_seed(1))
    assert th.equal(solver._generator.get_state(), state)
    assert batch.x.shape == (8, 2) and batch.mask.shape == (8, 8)  # keypoints first, under the mask
    th.testing.assert_close(batch.wx.sum(), th.tensor(1.0, dtype=th.float64))
    th.testing.assert_close(batch.wx[:2].sum(), th.tensor(0.2, dtype=th.float64))


def test_fit_leaves_the_callers_cost_unchanged():
    cost = no.SqEuclidean(normalize="max")
    solver = no.L2Dual(0.1, cost=cost, potentials="tabular", max_steps=5, batch_size=8, seed=0, device="cpu")
    x = th.randn(20, 2, dtype=th.float64)
    solver.fit(x, x + 1)
    assert cost.scale is None  # the caller's object is not frozen
    assert solver.cost.scale is not None and solver.cost is not cost


@pytest.mark.parametrize("method", ["gradient", "exact", "semi-dual"])
def test_each_keypoint_pair_carries_its_mass(method):
    """With neural potentials and the mask, every matched keypoint pair holds exactly its own mass in the plan."""

    def sample_x(n, gen):
        return th.randn(n, 2, generator=gen)

    def sample_y(n, gen):
        return th.randn(n, 2, generator=gen) + 2.0

    kx, ky = th.tensor([[0.0, 0.0], [1.0, 1.0]]), th.tensor([[2.0, 2.0], [3.0, 3.0]])
    solver = no.MaskedL2Dual(0.1, cost=no.SqEuclidean(normalize="max"), batch_size=64, max_steps=300, seed=1, method=method)
    solver.fit(sample_x, sample_y, keypoints=(kx, ky), keypoint_mass=0.1)
    batch = solver.sample_batch(256, th.Generator().manual_seed(5))
    assert batch.n_keypoints == 2
    u, v = solver.potentials_on(batch)
    C = solver.cost.matrix(batch.x, batch.y)
    T = no.plan(u, v, C, 0.1, batch.wx, batch.wy, mask=batch.mask).double()
    # Against the exact plan of this held-out masked minibatch (keypoint pairs and the regular block alike): the
    # trained potentials are within 0.05 in L1 for every update rule; untrained ones (one step) are 0.5 away.
    exact = no.solve_discrete(batch.wx.double(), batch.wy.double(), C.double(), 0.1, mask=batch.mask.double())
    assert float((T - th.as_tensor(exact.plan)).abs().sum()) < 0.15
    th.testing.assert_close(T[:2, :2], th.as_tensor(exact.plan)[:2, :2], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("schedule", ["cosine", "constant", "callable"])
def test_learning_rate_schedule_per_step(rng, schedule):
    x, y, cost, _ = _problem(rng)
    lr_schedule = (lambda progress: 1.0 - progress) if schedule == "callable" else schedule
    solver = no.L2Dual(
        EPS, cost=cost, potentials="tabular", batch_size=10, learning_rate=0.1, lr_schedule=lr_schedule, eval_every=1, seed=0
    )
    for _ in range(2):  # a second fit restarts the schedule
        res = solver.fit(x, y, max_steps=8)
        k = np.arange(1, 9) / 8
        expected = {"cosine": 0.5 * (1 + np.cos(np.pi * k)), "constant": np.ones(8), "callable": 1.0 - k}[schedule]
        np.testing.assert_allclose(res.history["lr"], 0.1 * expected, atol=1e-12)


@pytest.mark.parametrize("method", ["gradient", "exact", "semi-dual"])
def test_steps_per_batch_reuse_one_cost_matrix(rng, method):
    """steps_per_batch=k: one minibatch and one cost matrix per step, k optimiser steps on it, closer to its optimum."""
    x, y, cost, _ = _problem(rng, 40, 40)
    calls = []

    class Counting(no.SqEuclidean):
        def matrix(self, a, b):
            calls.append(len(a))
            return super().matrix(a, b)

    counted = Counting(normalize=cost.normalize)
    gaps = {}
    for k in (1, 20):
        solver = no.L2Dual(
            EPS,
            cost=counted,
            potentials="tabular",
            batch_size=40,
            steps_per_batch=k,
            seed=0,
            dtype=th.float64,
            method=method,
            learning_rate=5e-2,
        )
        solver.setup(x, y)
        calls.clear()
        batch = solver.sample_batch(40, th.Generator().manual_seed(7))
        solver._generator = th.Generator().manual_seed(7)  # the step draws exactly `batch`
        solver.step()
        assert len(calls) == 1 and solver.total_steps == 1
        assert solver.optimizer.state[next(iter(solver.u.parameters()))]["step"] == k
        C = cost.matrix(batch.x, batch.y)
        best = no.solve_discrete(batch.wx, batch.wy, C, EPS, tol=1e-9).value_dual
        uu, vv = solver.u(batch.x_idx), solver.v(batch.y_idx)
        gaps[k] = best - float(no.dual_objective(uu.detach(), vv.detach(), C, EPS, batch.wx, batch.wy))
    assert 0 <= gaps[20] < 0.5 * gaps[1]


def test_steps_per_batch_is_validated():
    with pytest.raises(ValueError, match="steps_per_batch"):
        no.L2Dual(EPS, steps_per_batch=0)


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_semi_dual_steps_bring_the_learned_u_to_the_c_transform(rng, reg_type):
    """The semi-dual method regresses u onto the c-transform of v: its own u (not a recomputed one) approaches it.

    Measured on the solver's tabular u over all 40 points (the population the minibatches sample): the gap to the
    c-transform of the current v at least halves with training, and so does the row error of the plan built from
    the learned u.
    """
    x, y, cost, _ = _problem(rng, 40, 40)
    solver = no.StochasticDual(
        EPS,
        reg_type=reg_type,
        cost=cost,
        potentials="tabular",
        batch_size=40,
        seed=0,
        dtype=th.float64,
        method="semi-dual",
        learning_rate=1e-2,
    )
    solver.setup(x, y)
    idx = th.arange(40)
    C = th.as_tensor(cost(x, y))
    w = th.full((40,), 1 / 40, dtype=th.float64)

    def gap_and_rows():
        uu, vv = solver.u(idx).detach(), solver.v(idx).detach()
        u_star = no.c_transform(vv, C, EPS, reg_type=reg_type)
        rows, _ = no.plan_marginals(uu, vv, C, EPS, w, w, reg_type=reg_type)
        return float((uu - u_star).abs().max()), float((rows - w).abs().sum())

    solver.step()
    early_gap, early_rows = gap_and_rows()
    for _ in range(400):
        solver.step()
    late_gap, late_rows = gap_and_rows()
    assert late_gap < 0.5 * early_gap
    assert late_rows < 0.5 * early_rows


@pytest.mark.parametrize("reg_type", ["l2", "entropic"])
def test_stochastic_solver_against_pots_own_dual_objective(rng, reg_type):
    """POT's ``ot.stochastic`` dual losses and plans are the reference: same convention, and the same optimum.

    POT's ``loss_dual_quadratic`` / ``loss_dual_entropic`` are maximised here by L-BFGS over tabular potentials (POT's
    objective, a generic optimiser); the stochastic solver must reach that plan. The objectives agree term by term
    (the entropic ones differ by the constant ``reg * sum(a) * sum(b)`` of the ``- 1`` in our conjugate).
    """
    import ot.stochastic as pot_stochastic

    x, y, cost, _ = _problem(rng)
    xt, yt = th.tensor(x), th.tensor(y)
    ws, wt = th.full((30,), 1 / 30, dtype=th.float64), th.full((30,), 1 / 30, dtype=th.float64)
    metric = lambda p, q: cost(p, q)  # noqa: E731
    pot_loss = pot_stochastic.loss_dual_quadratic if reg_type == "l2" else pot_stochastic.loss_dual_entropic
    pot_plan = pot_stochastic.plan_dual_quadratic if reg_type == "l2" else pot_stochastic.plan_dual_entropic

    uu = th.zeros(30, dtype=th.float64, requires_grad=True)
    vv = th.zeros(30, dtype=th.float64, requires_grad=True)
    opt = th.optim.LBFGS([uu, vv], max_iter=2000, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -pot_loss(uu, vv, xt, yt, reg=EPS, ws=ws, wt=wt, metric=metric)
        loss.backward()
        return loss

    opt.step(closure)
    reference = pot_plan(uu.detach(), vv.detach(), xt, yt, reg=EPS, ws=ws, wt=wt, metric=metric).numpy()
    # The reference is the optimum: a coupling of the two measures, and the exact solver's plan.
    np.testing.assert_allclose(reference.sum(1), 1 / 30, rtol=1e-5)
    exact = no.solve_discrete(None, None, cost(x, y), EPS, reg_type=reg_type).plan
    assert np.abs(reference - exact).sum() < 1e-4

    cls = no.L2Dual if reg_type == "l2" else no.EntropicDual
    solver = cls(
        EPS,
        cost=cost,
        potentials="tabular",
        batch_size=30,
        learning_rate=1e-2,
        lr_schedule="cosine",
        max_steps=3000,
        seed=0,
        dtype=th.float64,
        method="gradient",
    )
    u, v = solver.fit(x, y).potential_values(xt, yt)
    ours = no.plan(u.double().numpy(), v.double().numpy(), cost(x, y), EPS, reg_type=reg_type)
    assert np.abs(ours - reference).sum() < TOL_TABULAR
    # The same objective and plan formulas, evaluated on our potentials.
    M = th.as_tensor(cost(x, y))
    constant = 0.0 if reg_type == "l2" else EPS
    ours_obj = float(no.dual_objective(u.double(), v.double(), M, EPS, ws, wt, reg_type=reg_type))
    pot_obj = float(pot_loss(u.double(), v.double(), xt, yt, reg=EPS, ws=ws, wt=wt, metric=metric))
    assert ours_obj == pytest.approx(pot_obj + constant, abs=1e-12)
    np.testing.assert_allclose(
        ours, pot_plan(u.double(), v.double(), xt, yt, reg=EPS, ws=ws, wt=wt, metric=metric).numpy(), atol=1e-15
    )
