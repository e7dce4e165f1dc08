import numpy as np
import pytest
import torch as th
from scipy.spatial.distance import cdist

import neural_ot as no


@pytest.mark.parametrize(
    "cost,metric",
    [(no.SqEuclidean(), "sqeuclidean"), (no.Euclidean(), "euclidean"), (no.L1(), "cityblock"), (no.Cosine(), "cosine")],
)
def test_costs_match_scipy(rng, cost, metric):
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(cost(x, y), cdist(x, y, metric), atol=1e-12)
    xt, yt = th.tensor(x[:5]), th.tensor(y)
    np.testing.assert_allclose(cost.paired(xt, yt).numpy(), np.diag(cdist(x[:5], y, metric)), atol=1e-12)


def test_normalisation_and_chunks(rng):
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(30, 2))
    raw = cdist(x, y, "sqeuclidean")
    np.testing.assert_allclose(no.SqEuclidean(normalize="max")(x, y), raw / raw.max())
    np.testing.assert_allclose(no.SqEuclidean(normalize="mean")(x, y), raw / raw.mean())
    np.testing.assert_allclose(no.SqEuclidean(chunk_size=7)(x, y), raw, atol=1e-12)
    c = no.SqEuclidean(normalize="max")
    scale = c.fit_scale(x, y)
    np.testing.assert_allclose(c(x[:3], y[:4]), raw[:3, :4] / scale)  # frozen scale on sub-batches
    assert c(x.astype(np.float32), y.astype(np.float32)).dtype == np.float32


def test_callable_cost_forms(rng):
    x, y = th.tensor(rng.normal(size=(4, 2))), th.tensor(rng.normal(size=(3, 2)))
    paired = no.CallableCost(lambda s, a: -(s * a).sum(1), kind="paired")
    pairwise = no.CallableCost(lambda s, a: -(s @ a.T))
    th.testing.assert_close(paired(x, y), pairwise(x, y))
    with pytest.raises(ValueError, match="returned shape"):
        no.CallableCost(lambda s, a: s.sum(1))(x, y)
    with pytest.raises(ValueError, match="NaN"):
        no.CallableCost(lambda s, a: th.full((4, 3), float("nan"), dtype=s.dtype))(x, y)
    with pytest.raises(ValueError, match="cost"):
        no.get_cost("mahalanobis")
