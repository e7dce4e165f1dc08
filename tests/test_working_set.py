"""The L2 working set's building blocks: numpy's boolean passes, the candidates of a set, the reused ``z``.

On the CPU the working set compares and counts with numpy on the tensors' memory (faster than torch's there,
``examples/benchmarks/bench_dense_passes.py``); rows and columns with at least ``k`` positive pairs skip the top-k,
whose best pairs are in the set already. Each must give exactly what torch's plain operations give.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from neural_ot import _newton, _working_set
from neural_ot._dual_problem import _Problem, above, count_above, count_true, indicator
from neural_ot.regularizers import SquaredL2


def _z(n: int, m: int, seed: int, positive_share: float = 0.1) -> th.Tensor:
    """Normal entries shifted so that about ``positive_share`` are positive, and a NaN, an inf and a -inf."""
    gen = th.Generator().manual_seed(seed)
    z = th.randn(n, m, generator=gen, dtype=th.float64) - float(
        th.distributions.Normal(0, 1).icdf(th.tensor(1 - positive_share))
    )
    z[0, :3] = th.tensor([float("nan"), float("inf"), -float("inf")], dtype=th.float64)
    return z


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.0])
def test_boolean_passes_match_torch(threshold):
    z = _z(37, 53, 0)
    assert th.equal(above(z, threshold), z > threshold)
    assert count_above(z, threshold) == int(th.count_nonzero(z > threshold))
    positive = z > threshold
    assert int(count_true(positive)) == int(positive.sum())
    for dim in (0, 1):
        assert th.equal(count_true(positive, dim).long(), positive.sum(dim))
    for dtype in (th.float32, th.float64):
        out = th.full_like(z, 7.0, dtype=dtype)
        assert indicator(z, threshold, out) is out
        assert th.equal(out, (z > threshold).to(dtype))


def _work_sets(z: th.Tensor, k: int, mask: th.Tensor | None) -> tuple[th.Tensor, th.Tensor]:
    """The working set of ``z`` with candidates from the full top-k and from the short rows and columns only."""
    n, m = z.shape
    a, b = th.full((n,), 1.0 / n, dtype=th.float64), th.full((m,), 1.0 / m, dtype=th.float64)
    prob = _Problem(a, b, -z, mask, SquaredL2(1e-3))  # z of zero potentials is -C
    zz = prob.z_allowed(th.zeros(n, dtype=th.float64), th.zeros(m, dtype=th.float64))
    positive = above(zz)
    full, short = positive.clone(), positive.clone()
    _working_set.add_candidates(prob, zz, None, full, k)
    _working_set.add_candidates(prob, zz, positive, short, k)
    return full, short


@pytest.mark.parametrize("k", [1, 8, 40])
@pytest.mark.parametrize("masked", [False, True])
def test_short_rows_and_columns_give_the_full_top_k_set(k, masked):
    # At 2% positive pairs most rows and columns hold fewer than 8 of them (their top-k adds pairs), and some hold more
    # (their top-k is in the set already); k = 40 exceeds every count.
    z = _z(60, 45, 1, positive_share=0.02)
    z[:10] += 2.5  # rows with most pairs positive
    z[:, :5] += 2.5  # and columns
    z[20, 7] = z[21, 7] = 0.0  # not positive: a tie at the kink, in or out as top-k decides
    mask = (th.rand(60, 45, generator=th.Generator().manual_seed(2)) > 0.2).double() if masked else None
    if mask is not None:
        mask[:, 0] = 1.0  # every row keeps an allowed pair
    z = th.nan_to_num(z, nan=-1.0, posinf=5.0, neginf=-5.0)
    full, short = _work_sets(z, k, mask)
    for dim in (0, 1):  # both kinds of rows and of columns are exercised
        counts = (z > 0).sum(dim)
        assert bool((counts >= 8).any()) and bool((counts < 8).any())
    assert th.equal(full, short)


def test_z_is_reused_only_for_the_same_potentials_and_buffer():
    n, m = 30, 20
    C = th.rand(n, m, generator=th.Generator().manual_seed(3), dtype=th.float64)
    mask = th.ones(n, m, dtype=th.float64)
    mask[2, 5] = 0.0
    a, b = th.full((n,), 1.0 / n, dtype=th.float64), th.full((m,), 1.0 / m, dtype=th.float64)
    prob = _Problem(a, b, C, mask, SquaredL2(1e-2))
    stage = prob.with_regularizer(SquaredL2(1.0), coarse=True)  # a continuation stage shares the buffer
    u, v = th.rand(n, dtype=th.float64), th.rand(m, dtype=th.float64)
    z = stage.z_allowed(u, v)
    expected = (u[:, None] + v[None, :] - C).masked_fill(mask == 0, -float("inf"))
    assert th.equal(z, expected)
    assert prob.z_allowed(u, v) is z  # the next stage reads the same buffer, not a recomputation
    z.fill_(0.0)  # marks the buffer: a reuse would return it as it is
    assert bool((prob.z_allowed(u, v) == 0).all())
    assert th.equal(prob.z_allowed(u.clone(), v), expected)  # other tensors: computed again
    z.fill_(0.0)
    prob.scratch("z")  # whoever asks for the buffer will write it
    assert th.equal(prob.z_allowed(u, v), expected)


def test_working_set_solves_are_unchanged_by_the_short_path(monkeypatch):
    # The whole-set max-flow and the short rows' top-k against the candidates' max-flow and the full top-k.
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(400, 2)), rng.normal(size=(300, 2)) + 0.5
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    M /= M.max()
    a, b = rng.uniform(0.5, 1.5, 400), rng.uniform(0.5, 1.5, 300)
    a, b = a / a.sum(), b / b.sum()
    import neural_ot as no

    eps = 0.01 / (2 * 400 * 300)
    res = no.solve_discrete(a, b, M, eps)
    monkeypatch.setattr(_newton, "_FLOW_CHECK_PAIRS", -1)
    ref = no.solve_discrete(a, b, M, eps)
    assert res.status == ref.status == "converged"
    assert res.n_iter == ref.n_iter
    np.testing.assert_array_equal(res.plan, ref.plan)
