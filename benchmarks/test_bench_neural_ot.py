"""neural_ot's exact solvers against POT, and one stochastic dual step."""

import numpy as np
import ot
import pytest

import neural_ot as no


def _problem(n: int):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    M = ot.dist(x, y)
    return M / M.max(), np.full(n, 1.0 / n)


@pytest.mark.parametrize("n", [100, 300, 500])
@pytest.mark.parametrize("solver", ["neural_ot", "pot"])
def test_l2_exact(benchmark, n, solver):
    M, a = _problem(n)
    eps = 0.05
    benchmark.group = f"L2 exact, n={n}, reg={eps}"
    if solver == "neural_ot":
        res = benchmark.pedantic(no.solve, args=(M, a, a), kwargs={"reg": eps}, rounds=3, warmup_rounds=1)
        plan = res.plan
    else:
        kw = {"reg_type": "l2", "stopThr": 1e-12, "numItermax": 5000}
        plan = benchmark.pedantic(
            ot.smooth.smooth_ot_dual, args=(a, a, M, 2 * eps * n * n), kwargs=kw, rounds=3, warmup_rounds=1
        )
    benchmark.extra_info["marginal_error"] = float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - a).sum())


def _masked_problem(n: int):
    """Three rotated clusters with one keypoint pair each (the keypoint demo's problem at size ``n``)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    x = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])[labels] + 0.5 * rng.normal(size=(n, 2))
    rot = np.array([[np.cos(2.1), -np.sin(2.1)], [np.sin(2.1), np.cos(2.1)]])
    y = x @ rot.T * 0.8 + np.array([6.0, 0.0]) + 0.1 * rng.normal(size=(n, 2))
    pairs = [(k, k) for k in range(3)]
    base = no.SqEuclidean(normalize="max")
    base.fit_scale(x, y)
    cost = no.MixedCost(base, no.KeypointRelationCost(x[:3], y[:3], rho=0.1), weight=0.5)
    return np.asarray(cost(x, y)), no.keypoint_mask(n, n, pairs), np.full(n, 1.0 / n)


@pytest.mark.parametrize("n", [100, 300])
@pytest.mark.parametrize("solver", ["neural_ot", "pot"])
def test_l2_masked(benchmark, n, solver):
    """Keypoint-masked L2 at the demo's eps = 1e-3; POT solves it with a large cost on the masked pairs."""
    M, mask, a = _masked_problem(n)
    eps = 1e-3
    benchmark.group = f"L2 masked (3 keypoint pairs), n={n}, reg={eps}"
    if solver == "neural_ot":
        res = benchmark.pedantic(no.solve_discrete, args=(a, a, M, eps), kwargs={"mask": mask}, rounds=5, warmup_rounds=1)
        plan = res.plan
    else:
        kw = {"reg_type": "l2", "stopThr": 1e-12, "numItermax": 5000}
        big = M + 10.0 * (1 - mask)
        plan = benchmark.pedantic(
            ot.smooth.smooth_ot_dual, args=(a, a, big, 2 * eps * n * n), kwargs=kw, rounds=5, warmup_rounds=1
        )
    benchmark.extra_info["marginal_error"] = float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - a).sum())


@pytest.mark.parametrize("n", [300, 1000])
@pytest.mark.parametrize("solver", ["neural_ot", "pot"])
def test_entropic_exact(benchmark, n, solver):
    M, a = _problem(n)
    eps = 0.01
    benchmark.group = f"entropic exact, n={n}, reg={eps}"
    if solver == "neural_ot":
        res = benchmark.pedantic(
            no.solve, args=(M, a, a), kwargs={"reg": eps, "reg_type": "entropic"}, rounds=3, warmup_rounds=1
        )
        plan = res.plan
    else:
        kw = {"stopThr": 1e-9, "numItermax": 100_000}
        plan = benchmark.pedantic(ot.sinkhorn, args=(a, a, M, eps), kwargs=kw, rounds=3, warmup_rounds=1)
    benchmark.extra_info["marginal_error"] = float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - a).sum())


@pytest.mark.parametrize("potentials", ["tabular", "mlp"])
def test_stochastic_dual_step(benchmark, potentials):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    solver = no.L2Dual(0.1, potentials=potentials, batch_size=256, seed=0)
    solver.setup(x, y)
    benchmark.group = "stochastic L2 dual step, batch 256, dim 8"
    benchmark(solver.step)


@pytest.mark.parametrize("weights", ["equal", "unequal"])
@pytest.mark.parametrize("sort", ["shipped", "torch.sort"])
def test_l2_row_sort(benchmark, weights, sort):
    """The row sort of the L2 row roots (block steps, c-transforms) on 256 x 256: the shipped one against torch's."""
    import torch as th

    from neural_ot import regularizers

    gen = th.Generator().manual_seed(0)
    t = th.randn(256, 256, generator=gen, dtype=th.float64)
    w = th.full((256,), 1 / 256, dtype=th.float64) if weights == "equal" else th.rand(256, generator=gen, dtype=th.float64)
    benchmark.group = f"L2 row sort, 256 x 256, {weights} weights"

    def torch_sort() -> tuple[th.Tensor, th.Tensor]:
        s = th.sort(t, dim=1)
        return s.values, th.gather(w.expand_as(t), 1, s.indices)

    ts, ws = benchmark(regularizers._sorted_rows, t, w) if sort == "shipped" else benchmark(torch_sort)
    assert th.equal(ts, torch_sort()[0]) and th.equal(ws, torch_sort()[1])
