import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _sb3_logdir(tmp_path_factory):
    # SB3's learn() makes a fresh empty folder in /tmp per call unless SB3_LOGDIR names one (thousands per test run)
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def point_clouds(rng, n, m, d=2, kind="spread"):
    """Two point clouds; 'clustered' puts the points in a few tight clusters."""
    if kind == "clustered":
        centers = rng.normal(scale=3.0, size=(4, d))
        x = centers[rng.integers(4, size=n)] + 0.1 * rng.normal(size=(n, d))
        y = centers[rng.integers(4, size=m)] + 0.1 * rng.normal(size=(m, d)) + 0.5
    else:
        x = rng.normal(size=(n, d))
        y = rng.normal(size=(m, d)) + 1.0
    return x, y


def normalized_cost(x, y):
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return M / M.max()
