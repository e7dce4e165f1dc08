"""Compatibility function on new points, resampling frequencies and barycentric projection."""

import numpy as np
import pytest
import torch as th
from scipy.stats import chisquare

import neural_ot as no


class Linear(th.nn.Module):
    def __init__(self, w, c):
        super().__init__()
        self.w = th.nn.Parameter(th.tensor(w, dtype=th.float64))
        self.c = th.nn.Parameter(th.tensor(c, dtype=th.float64))

    def forward(self, x):
        return x @ self.w + self.c


def _compat(eps=0.1):
    return no.Compatibility(Linear([1.0, 0.0], 0.5), Linear([0.0, 1.0], 0.2), no.SqEuclidean(), eps)


def test_matrix_and_paired_match_formula(rng):
    H = _compat()
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(4, 2))
    u = x[:, 0] + 0.5
    v = y[:, 1] + 0.2
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    expected = np.maximum(u[:, None] + v[None] - C, 0) / 0.2
    np.testing.assert_allclose(H(x, y), expected)
    np.testing.assert_allclose(H.paired(x[:4], y), np.diag(expected[:4]))
    H.chunk_size = 2
    np.testing.assert_allclose(H(x, y), expected)


def test_resampling_frequencies_are_proportional_to_h():
    H = _compat()
    n, L = 20_000, 4
    x = th.zeros(n, 2, dtype=th.float64)
    cand = th.tensor([[0.0, 0.3], [0.1, 0.5], [0.0, 0.9], [3.0, 3.0]], dtype=th.float64)
    out = H.resample(x, cand.expand(n, L, 2), generator=th.Generator().manual_seed(0))
    h = out.density[0].numpy()
    assert h[3] == 0 and np.all(h[:3] > 0)
    counts = np.bincount(out.index.numpy(), minlength=L)
    assert counts[3] == 0
    expected = h[:3] / h[:3].sum() * n
    assert chisquare(counts[:3], expected).pvalue > 1e-3
    assert not out.fallback.any()


def test_fallback_when_all_h_are_zero():
    H = _compat()
    cand = th.tensor([[[5.0, 5.0], [2.0, 2.5], [9.0, 9.0]]], dtype=th.float64)
    out = H.resample(th.zeros(1, 2, dtype=th.float64), cand)
    assert out.fallback.item() and out.index.item() == 1  # the candidate closest to being compatible
    th.testing.assert_close(out.probs, th.tensor([[0.0, 1.0, 0.0]], dtype=th.float64))


def test_barycentric_projection_matches_manual(rng):
    H = _compat(eps=1.0)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(7, 2))
    b = rng.dirichlet(np.ones(7))
    W = H(x, y) * b[None]
    proj = H.barycentric_projection(x, y, b)
    has_mass = W.sum(1) > 0
    assert has_mass.sum() >= 3 and (~has_mass).any()
    np.testing.assert_allclose(proj[has_mass], (W @ y)[has_mass] / W.sum(1)[has_mass, None])
    np.testing.assert_allclose(proj[~has_mass], np.broadcast_to(b @ y, proj[~has_mass].shape))


def test_nan_compatibility_raises():
    with pytest.raises(FloatingPointError, match="NaN"):
        no.resample_from_scores(th.zeros(1, 2), th.tensor([[float("nan"), 1.0]]))


def test_tabular_potentials_rejected():
    with pytest.raises(TypeError, match="neural potentials"):
        no.Compatibility(no.TabularPotential(3), no.TabularPotential(3), no.SqEuclidean(), 0.1)
