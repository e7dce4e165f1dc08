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


def test_best_of_n_evaluation_picks_the_highest_scored_candidate(tmp_path):
    import pytest

    from tests.otpr_helpers import fast

    kwargs = fast(policy_kwargs={"guidance": "expectile", "eval_candidates": 5})
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **kwargs)
    model.pretrain(identity_demos(), n_steps=20)
    model.learn(30)
    policy = model.policy
    obs = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    actions, _ = model.predict(obs, deterministic=True)
    # By hand: 5 DDIM samples from the 5 fixed noises, the one with the highest expectile score.
    with th.no_grad():
        obs_n = policy.prepare_obs(th.as_tensor(obs))
        noise = policy.eval_candidate_noise
        assert noise.shape == (5, 1) and len(th.unique(noise)) == 5
        cand = policy.sample_actions(obs_n.repeat_interleave(5, 0), noise.repeat(7, 1)).reshape(7, 5, 1)
        z, _ = policy.guidance.grouped_weights(policy, obs_n, cand)
        best = cand[th.arange(7), z.argmax(1)]
    np.testing.assert_allclose(actions, policy.unscale_action(best.numpy()), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], actions)  # repeatable
    model.save(tmp_path / "m")
    loaded = OTPR.load(tmp_path / "m", env=IdentityEnvBox(ep_length=20))
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)  # the noises are rebuilt
    with pytest.raises(ValueError, match="eval_candidates"):
        OTPR("MlpPolicy", IdentityEnvBox(), **fast(policy_kwargs={"eval_candidates": 0}))
