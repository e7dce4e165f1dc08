"""Selectivity of guidances: weight entropies and the temperature matcher, against closed forms and a trained H."""

import math

import numpy as np
import pytest
import torch as th
from otpr_helpers import IdentityEnvBox, fast, identity_demos

from otpr_sb3 import OTPR
from otpr_sb3.guidance import make_guidance
from otpr_sb3.guidance.selectivity import candidate_entropy, match_temperature, weight_entropy


def _binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_weight_entropy_of_uniform_one_hot_and_empty_rows():
    w = th.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
    e = weight_entropy(w)
    assert e[0].item() == pytest.approx(math.log(4)) and e[1].item() == 0.0 and math.isnan(e[2].item())
    assert e[3].item() == pytest.approx(_binary_entropy(0.25))
    with pytest.raises(ValueError, match="non-negative"):
        weight_entropy(th.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="shape"):
        weight_entropy(th.ones(3))


def test_match_temperature_inverts_the_binary_entropy():
    # Two candidates whose scores differ by d: the weights are (sigmoid(T d), 1 - sigmoid(T d)).
    d = th.tensor([0.5, 1.0, 2.0])
    scores = th.stack([d, th.zeros(3)], dim=1)
    T_true = 1.7
    target = float(np.mean([_binary_entropy(1 / (1 + math.exp(-T_true * float(x)))) for x in d]))
    assert match_temperature(scores, target) == pytest.approx(T_true, rel=1e-4)
    # Uniform weights are out of reach of any finite temperature, and so is a target above log m.
    with pytest.raises(ValueError, match="outside"):
        match_temperature(scores, math.log(2) + 0.01)


def test_match_temperature_is_monotone():
    scores = th.randn(64, 8, generator=th.Generator().manual_seed(0))
    temps = [match_temperature(scores, e) for e in (1.9, 1.5, 1.0, 0.5)]
    assert temps == sorted(temps) and temps[0] > 0


def test_q_guidance_at_the_matched_temperature_is_as_selective_as_h():
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **fast())
    model.pretrain(identity_demos(), n_steps=50)
    model.learn(100)
    policy = model.policy
    assert bool(policy.guidance.ready)
    obs = policy.prepare_obs(th.linspace(-1, 1, 64)[:, None])
    candidates = th.rand(64, 8, 1, generator=th.Generator().manual_seed(1)) * 2 - 1
    target = candidate_entropy(policy.guidance, policy, obs, candidates)
    assert 0 < target < math.log(8)
    with th.no_grad():
        q = policy.critic.min(obs.repeat_interleave(8, dim=0), candidates.reshape(-1, 1)).reshape(64, 8)
    T = match_temperature(q / policy.scales.q_spread, target)
    q_guidance = make_guidance("q", policy.obs_dim, policy.act_dim, policy, temperature=T)
    q_guidance.mark_ready()
    assert candidate_entropy(q_guidance, policy, obs, candidates) == pytest.approx(target, abs=1e-3)
