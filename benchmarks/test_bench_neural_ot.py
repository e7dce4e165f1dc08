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
