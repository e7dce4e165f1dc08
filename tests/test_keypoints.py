"""Keypoint mask, relation vectors and the Jensen-Shannon relation cost."""

import os

import numpy as np
import pytest
import torch as th
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax

import neural_ot as no


def test_keypoint_mask_structure():
    mask = no.keypoint_mask(5, 6, [(0, 2), (3, 5)])
    assert mask.shape == (5, 6)
    assert mask[0].tolist() == [0, 0, 1, 0, 0, 0]
    assert mask[3].tolist() == [0, 0, 0, 0, 0, 1]
    assert mask[:, 2].tolist() == [1, 0, 0, 0, 0]
    assert mask[:, 5].tolist() == [0, 0, 0, 1, 0]
    others = np.delete(np.delete(mask, [0, 3], axis=0), [2, 5], axis=1)
    assert np.all(others == 1)
    assert no.keypoint_mask(3, 3, np.zeros((0, 2), int)).sum() == 9


@pytest.mark.parametrize("dtype", [np.float64, np.float32, bool, np.int8])
def test_keypoint_mask_dtype(dtype):
    mask = no.keypoint_mask(5, 6, [(0, 2), (3, 5)], dtype=dtype)
    assert mask.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mask.astype(np.float64), no.keypoint_mask(5, 6, [(0, 2), (3, 5)]))


def test_relation_vectors_row_stable_softmax():
    C = np.array([[1e4, 1e4 + 1.0, 2e4], [0.0, 0.5, 3.0]])
    R = no.relation_vectors(C, rho=0.1)
    np.testing.assert_allclose(R, softmax(-C / 0.1, axis=1))
    assert np.all(np.isfinite(R)) and np.allclose(R.sum(1), 1)


def test_js_matches_scipy_and_is_chunk_independent(rng):
    P = rng.dirichlet(np.ones(5), size=7)
    Q = rng.dirichlet(np.ones(5), size=9)
    P[0, :2] = 0  # zeros are handled with 0 log 0 = 0
    P[0] /= P[0].sum()
    J = no.js_divergence_matrix(P, Q)
    ref = np.array([[jensenshannon(p, q) ** 2 for q in Q] for p in P])
    np.testing.assert_allclose(J, ref, atol=1e-12)
    np.testing.assert_allclose(no.js_divergence_matrix(P, Q, chunk_size=2), J, atol=1e-15)
    assert np.all(J >= 0) and np.all(J <= np.log(2) + 1e-15)
    assert np.allclose(np.diag(no.js_divergence_matrix(P, P)), 0, atol=1e-12)


def test_relation_cost_preserves_keypoint_relations(rng):
    kx = rng.normal(size=(4, 2))
    ky = kx @ np.array([[0.0, -1.0], [1.0, 0.0]]) * 2 + 3  # a similarity transform of the keypoints
    cost = no.KeypointRelationCost(kx, ky, rho=0.1)
    G = cost(kx, ky)
    # Each keypoint is closest, in relation space, to its own match.
    assert np.all(np.argmin(G, axis=1) == np.arange(4))
    np.testing.assert_allclose(np.diag(G), 0, atol=1e-12)
    x = rng.normal(size=(6, 2))
    y = rng.normal(size=(5, 2))
    np.testing.assert_allclose(cost.paired(th.tensor(x[:5]), th.tensor(y)).numpy(), np.diag(cost(x[:5], y)), atol=1e-12)


def test_mixed_cost_weights(rng):
    kx, ky = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    base = no.SqEuclidean()
    rel = no.KeypointRelationCost(kx, ky)
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(5, 2))
    np.testing.assert_allclose(no.MixedCost(base, rel, 0.0)(x, y), base(x, y))
    np.testing.assert_allclose(no.MixedCost(base, rel, 1.0)(x, y), rel(x, y))
    np.testing.assert_allclose(no.MixedCost(base, rel, 0.3)(x, y), 0.7 * base(x, y) + 0.3 * rel(x, y))
    with pytest.raises(ValueError, match="weight"):
        no.MixedCost(base, rel, 1.5)


@pytest.mark.parametrize(
    "pairs,match",
    [
        ([(0, 0), (5, 1)], "source index 5 out of range"),
        ([(0, 0), (0, 1)], "repeats source index 0"),
        ([(0, 1), (2, 1)], "repeats target index 1"),
        ([(0, -1)], "out of range"),
        ([[0, 1, 2]], "shape"),
    ],
)
def test_bad_pairs(pairs, match):
    with pytest.raises(ValueError, match=match):
        no.keypoint_mask(4, 4, pairs)


def _masked_with_relation(rng, weight, K=4, n=30, m=25, km=0.2, eps=0.05):
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.7
    kx, ky = rng.normal(size=(K, 2)), rng.normal(size=(K, 2)) + 0.7
    base = no.SqEuclidean(normalize=10.0)
    X, Y = np.vstack([kx, x]), np.vstack([ky, y])
    cost = no.MixedCost(base, no.KeypointRelationCost(kx, ky), weight)
    a = np.concatenate([np.full(K, km / K), np.full(n, (1 - km) / n)])
    b = np.concatenate([np.full(K, km / K), np.full(m, (1 - km) / m)])
    mask = no.keypoint_mask(K + n, K + m, [(k, k) for k in range(K)])
    res = no.solve_discrete(a, b, cost(X, Y), eps, mask=mask)
    regular = res.plan[K:, K:] / (1 - km)
    # OTPR-U on the same replay points: no keypoints, the base cost, eps / (1 - km) (the L2 term scales with the mass)
    unmasked = no.solve_discrete(None, None, base(x, y), eps / (1 - km)).plan
    return regular, unmasked, res.plan[:K, :K], km / K


def test_mask_without_relation_cost_leaves_the_regular_coupling_unchanged(rng):
    regular, unmasked, kp_block, kp_mass = _masked_with_relation(rng, weight=0.0)
    np.testing.assert_allclose(regular, unmasked, atol=1e-9)  # the blocks decouple: keypoints change nothing
    np.testing.assert_allclose(kp_block, kp_mass * np.eye(len(kp_block)), atol=1e-12)


@pytest.mark.parametrize("weight", [0.3, 0.7])
def test_mask_with_relation_cost_changes_the_regular_coupling(rng, weight):
    regular, unmasked, kp_block, kp_mass = _masked_with_relation(rng, weight=weight)
    assert np.abs(regular - unmasked).sum() > 0.05  # keypoints reach the other pairs through g
    np.testing.assert_allclose(kp_block, kp_mass * np.eye(len(kp_block)), atol=1e-12)


def test_relation_cost_rejects_normalized_within_space_costs():
    k = np.zeros((3, 2))
    k[:, 0] = [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="source_cost"):
        no.KeypointRelationCost(k, k, source_cost=no.SqEuclidean(normalize="max"))
    no.KeypointRelationCost(k, k, source_cost=no.Euclidean())  # un-normalised costs are fine


def test_js_matrix_is_independent_of_chunking():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(6), size=17)
    Q = rng.dirichlet(np.ones(6), size=11)
    full = no.js_divergence_matrix(P, Q)
    for chunk in (1, 4, 17, 100):
        np.testing.assert_allclose(no.js_divergence_matrix(P, Q, chunk_size=chunk), full, atol=1e-14)


def test_js_small_broadcast_path_matches_the_coordinate_loop(monkeypatch):
    """Small problems take one broadcast pass, large ones the memory-bounded loop: the same numbers."""
    import neural_ot.keypoints as kp

    rng = np.random.default_rng(1)
    P = th.as_tensor(rng.dirichlet(np.ones(16), size=9))
    Q = th.as_tensor(rng.dirichlet(np.ones(16), size=13))
    P[0, 3] = 0.0  # 0 log 0 on both paths
    broadcast = no.js_divergence_matrix(P, Q)
    paired = no.KeypointRelationCost(rng.normal(size=(16, 2)), rng.normal(size=(16, 2))).paired
    x, y = th.as_tensor(rng.normal(size=(9, 2))), th.as_tensor(rng.normal(size=(9, 2)))
    paired_broadcast = paired(x, y)
    monkeypatch.setattr(kp, "_BROADCAST_LIMIT", 0)
    th.testing.assert_close(no.js_divergence_matrix(P, Q), broadcast, rtol=0, atol=1e-14)
    th.testing.assert_close(paired(x, y), paired_broadcast, rtol=0, atol=1e-14)


def test_paired_relation_cost_is_the_diagonal_of_the_matrix():
    """One JS formula: the aligned-pair cost equals the diagonal of the pairwise cost."""
    rng = np.random.default_rng(0)
    cost = no.KeypointRelationCost(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)), rho=0.3)
    x, y = th.as_tensor(rng.normal(size=(40, 3))), th.as_tensor(rng.normal(size=(40, 2)))
    th.testing.assert_close(cost.paired(x, y), th.diagonal(cost.pairwise(x, y)), rtol=0, atol=1e-12)


def test_minibatch_mask_is_the_kpg_mask_of_its_keypoints():
    from neural_ot.minibatch import build_measures, draw_minibatch

    K, n = 3, 5
    rng = np.random.default_rng(0)
    mx, my = build_measures(rng.normal(size=(20, 2)), rng.normal(size=(20, 3)), keypoints=(np.zeros((K, 2)), np.ones((K, 3))))
    batch = draw_minibatch(mx, my, n, th.Generator().manual_seed(0), th.device("cpu"), th.float64)
    np.testing.assert_array_equal(batch.mask.numpy(), no.keypoint_mask(K + n, K + n, [(k, k) for k in range(K)]))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to measure peak memory")
def test_js_matrix_memory_is_of_the_order_of_its_output():
    """No n x m x K intermediate (512 MB per float64 temporary at n = m = 2000, K = 16): a few n x m buffers."""
    from test_stochastic import _peak_rss_bytes, _reset_peak_rss

    rng = np.random.default_rng(0)
    P = th.softmax(th.as_tensor(rng.normal(size=(2000, 16))), 1)
    Q = th.softmax(th.as_tensor(rng.normal(size=(2000, 16))), 1)
    no.js_divergence_matrix(P[:10], Q[:10])  # warm-up
    _reset_peak_rss()
    before = _peak_rss_bytes()
    out = no.js_divergence_matrix(P, Q)
    extra = _peak_rss_bytes() - before
    assert extra < 5 * out.nbytes, f"{extra / 2**20:.0f} MiB for a {out.nbytes / 2**20:.0f} MiB result"


def test_masked_fit_compatibility_holds_the_keypoint_optimum_of_the_exact_plan():
    """After ``MaskedL2Dual.fit``, ``result.compatibility()`` gives keypoint rows and columns as the exact masked plan."""
    rng = np.random.default_rng(0)
    n = 60
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1
    pairs = [(0, 0), (1, 7), (5, 3)]
    cost = no.SqEuclidean(normalize="max")
    result = no.MaskedL2Dual(reg=1e-2, cost=cost, max_steps=50, seed=0).fit(x, y, pairs=pairs)
    exact = no.solve(cost(x, y), reg=1e-2, mask=no.keypoint_mask(n, n, pairs))
    compat = result.compatibility()
    H = compat(x, y)
    rows, cols = [i for i, _ in pairs], [j for _, j in pairs]
    np.testing.assert_allclose(H[rows], exact.density[rows], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(H[:, cols], exact.density[:, cols], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(compat.paired(x[rows], y[cols]), n, rtol=1e-6)
    # Resampling from a keypoint state picks its own target whenever it is among the candidates.
    candidates = np.stack([y[[j, 10, 11]] for j in cols])
    assert compat.resample(x[rows], candidates).index.tolist() == [0, 0, 0]
    # Plans from the pairs that are not keypoints still come from the potentials.
    free = np.setdiff1d(np.arange(n), rows)
    assert (H[np.ix_(free, np.setdiff1d(np.arange(n), cols))] > 0).any()
