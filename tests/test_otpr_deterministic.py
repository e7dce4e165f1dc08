"""Reproducibility with a seed, in the shape of SB3's test_deterministic.py."""

import numpy as np
import torch as th
from otpr_helpers import FAST, IdentityEnvBox, identity_demos

from otpr_sb3 import OTPR


def _run(seed):
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=seed, **FAST)
    model.pretrain(identity_demos(), n_steps=20)
    model.learn(50)
    return model


def test_same_seed_same_training():
    m1, m2 = _run(3), _run(3)
    for (name, p), (_, q) in zip(m1.policy.state_dict().items(), m2.policy.state_dict().items()):
        th.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    obs = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(m1.predict(obs, deterministic=True)[0], m2.predict(obs, deterministic=True)[0])


def test_deterministic_predict_is_repeatable():
    model = _run(0)
    obs = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    s1, _ = model.predict(obs, deterministic=False)
    s2, _ = model.predict(obs, deterministic=False)
    assert not np.array_equal(s1, s2)  # stochastic collection draws new candidates
