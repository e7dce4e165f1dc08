"""The critic's TD target: IQL's V(s') by default, or a Bellman backup on the policy's actions (Diffusion-QL)."""

import copy

import pytest
import torch as th
from otpr_helpers import SMALL, fast

from otpr_sb3 import OTPR
from otpr_sb3.updates import iql_update


def _batch(policy, n=16, seed=0):
    g = th.Generator().manual_seed(seed)
    obs, next_obs = th.randn(n, policy.obs_dim, generator=g), th.randn(n, policy.obs_dim, generator=g)
    act = th.rand(n, policy.act_dim, generator=g) * 2 - 1
    rew, done = th.randn(n, generator=g), (th.rand(n, generator=g) < 0.3).float()
    return obs, act, rew, next_obs, done


@pytest.mark.parametrize("backup", ["value", "policy"])
def test_the_td_target_is_the_chosen_backup(backup):
    model = OTPR("MlpPolicy", "Pendulum-v1", seed=0, policy_kwargs=SMALL)
    policy, gamma = model.policy, 0.9
    batch = _batch(policy)
    obs, act, rew, next_obs, done = batch
    next_actions = th.rand(len(obs), policy.act_dim) * 2 - 1 if backup == "policy" else None
    target_net = copy.deepcopy(policy.critic_target)
    before = copy.deepcopy(policy.critic)
    with th.no_grad():
        boot = policy.value(next_obs) if next_actions is None else target_net.min(next_obs, next_actions)
        target = rew + (1 - done) * gamma * boot
        q1, q2 = before.both(obs, act)
        expected = 0.5 * ((q1 - target).square().mean() + (q2 - target).square().mean())
    critic_loss, _ = iql_update(policy, policy.critic_target, batch, gamma, 0.005, next_actions)
    assert th.allclose(critic_loss, expected, rtol=1e-5)


def test_policy_backup_trains_and_round_trips(tmp_path):
    model = OTPR("MlpPolicy", "Pendulum-v1", seed=0, critic_backup="policy", **fast(learning_starts=20))
    model.learn(60)
    model.save(tmp_path / "m.zip")
    assert OTPR.load(tmp_path / "m.zip").critic_backup == "policy"
    with pytest.raises(ValueError, match="critic_backup"):
        OTPR("MlpPolicy", "Pendulum-v1", critic_backup="max")
