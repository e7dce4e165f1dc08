"""The exact solver's Newton iterations allocate no ``(n, m)`` tensor beyond their work buffers.

A fresh ``(n, m)`` tensor costs a page fault per 4 KiB once glibc has returned freed memory to the system; per Newton
iteration that was a large share of a solve (docs/benchmarks.rst). Allocations are counted by the torch profiler,
each where it is made (``self_cpu_memory_usage``), so an operator and the ``empty`` it calls count once.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch.profiler import ProfilerActivity, profile

import neural_ot as no
from neural_ot import _newton


def _cost(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    return M / M.max()


def _large_allocations(M: np.ndarray, eps: float) -> tuple[int, no.OTResult]:
    """Number of allocations of at least a float32 ``(n, m)`` tensor during one solve, and its result."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        res = no.solve(M, reg=eps)
    size = M.size * 4
    return sum(e.self_cpu_memory_usage >= size for e in prof.events()), res


@pytest.mark.parametrize("pot_reg", [0.01, 0.1])
def test_continuation_allocates_its_buffers_once(monkeypatch, pot_reg):
    # n = 300 at POT reg 0.01-0.1: three continuation stages, the first two coarse, 28-40 Newton iterations. A float64
    # comparison written into the float32 buffer allocated two float64 temporaries per coarse iteration (12 at reg
    # 0.01). The coarse stages now run in float32 (tests/test_single_stages.py): the float32 copy of the costs and its
    # buffers z, tmp and A, then the target stage's float64 z, tmp and A, and the cold start's block-step thresholds
    # (2-4: C - v, a fresh matrix per full block step) are all, once per solve. The full-matrix stage's: at this size
    # the CPU solve runs a working set instead.
    monkeypatch.setattr(_newton, "_WORKING_SET_MIN_PAIRS", 10**12)
    n = 300
    M = _cost(n)
    count, res = _large_allocations(M, pot_reg / (2 * n * n))
    assert res.status == "converged" and res.n_iter >= 20
    assert count <= 11


def test_the_line_search_near_the_optimum_allocates_nothing(monkeypatch):
    # A dense problem (eps 0.05: most pairs active) whose last Newton steps are judged by the marginal error (the
    # dual's decrease is below float64 resolution there): each trial point built a whole curvature, a fresh z and a
    # copy of its 0/1 matrix; its masses are now matrix-vector products with the density in the "tmp" buffer.
    # The torch stage's: at this size the CPU solve runs the numpy stage (neural_ot._small_newton) instead.
    monkeypatch.setattr(_newton, "_numpy_stage", _newton._newton_stage)
    M = _cost(200)
    count, res = _large_allocations(M, 0.05)
    assert res.status == "converged" and max(res.marginal_errors) <= 1e-9
    assert count <= 3  # z, tmp (the result's plan and density) and A
    assert np.allclose(res.plan.sum(1), 1 / 200, atol=1e-12) and np.allclose(res.plan.sum(0), 1 / 200, atol=1e-12)
