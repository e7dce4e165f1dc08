"""Intermediate L2 continuation stages run in float32 where rounding allows; the target stage and the result do not.

A stage before the target is solved to a marginal error of 1e-2 only, so float32 (half the memory traffic of every
dense pass) suffices where rounding the costs stays below 5% of ``2 eps``, a lower bound of the stage's
typical ``z`` (``_newton._SINGLE_ROUNDING``). The plan must be the float64 continuation's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

import neural_ot as no
from neural_ot import _newton


def _cost(n: int, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    return M / M.max()


def _stage_dtypes(monkeypatch) -> list[tuple[float, th.dtype]]:
    """Record ``(eps, dtype)`` of every stage the working-set driver runs."""
    seen: list[tuple[float, th.dtype]] = []
    run = _newton._working_set_stage

    def spy(prob, u, v, *args):
        seen.append((prob.r.reg, prob.C.dtype))
        assert u.dtype == v.dtype == prob.C.dtype
        return run(prob, u, v, *args)

    monkeypatch.setattr(_newton, "_working_set_stage", spy)
    monkeypatch.setattr(_newton, "_NUMPY_STAGE_WORK", 0)  # a working set from this size on
    monkeypatch.setattr(_newton, "_NUMPY_DENSE_WORK", 0)
    return seen


@pytest.mark.parametrize("pot_reg", [0.1, 0.01])
@pytest.mark.parametrize("masked", [False, True])
def test_float32_stages_give_the_float64_plan(monkeypatch, pot_reg, masked):
    n, m = 300, 250
    M = _cost(n, m, 0)
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    a, b = a / a.sum(), b / b.sum()
    mask = (rng.uniform(size=(n, m)) > 0.3).astype(float) if masked else None
    if mask is not None:
        mask[np.arange(n), np.arange(n) % m] = 1.0
    eps = pot_reg / (2 * n * m)
    seen = _stage_dtypes(monkeypatch)
    res = no.solve_discrete(a, b, M, eps, mask=mask, tol=1e-11)
    assert [d for _, d in seen[:-1]] == [th.float32] * (len(seen) - 1) and len(seen) >= 2
    assert seen[-1] == (eps, th.float64)
    assert res.plan.dtype == np.float64
    monkeypatch.setattr(_newton, "_SINGLE_ROUNDING", 0.0)  # every stage in float64
    del seen[:]
    ref = no.solve_discrete(a, b, M, eps, mask=mask, tol=1e-11)
    assert {d for _, d in seen} == {th.float64}
    assert res.status == ref.status == "converged"
    assert max(res.marginal_errors) <= 1e-11
    assert np.abs(res.plan - ref.plan).sum() < 1e-9
    if mask is not None:
        assert res.plan[mask == 0].max() == 0.0


def test_stages_too_fine_for_float32_stay_float64(monkeypatch):
    # POT reg 1e-5: the later intermediate stages' eps is so small that float32 rounding of the costs (6e-8) would
    # exceed 5% of their 2 eps; only the coarse ones run in float32.
    n, m = 300, 250
    M = _cost(n, m, 2)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    eps = 1e-5 / (2 * n * m)
    seen = _stage_dtypes(monkeypatch)
    res = no.solve_discrete(a, b, M, eps)
    assert res.status == "converged"
    single = float(th.finfo(th.float32).eps) * M.max() / (2 * _newton._SINGLE_ROUNDING)
    for reg, dtype in seen[:-1]:
        assert dtype == (th.float32 if reg >= single else th.float64)
    assert {d for _, d in seen[:-1]} == {th.float32, th.float64}  # both kinds occur here
