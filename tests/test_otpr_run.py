"""Smoke tests in the shape of SB3's test_run.py."""

import numpy as np
import pytest
import torch as th
from otpr_helpers import FAST, IdentityEnvBox, PointGoalEnv, identity_demos, point_goal_demos
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from neural_ot import KeypointRelationCost
from otpr_sb3 import OTPR, ActionChunkWrapper
from otpr_sb3.guidance import GUIDANCES as GUIDANCE


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("train_freq", [1, (2, "step")])
def test_run_box(n_envs, train_freq):
    env = make_vec_env(lambda: IdentityEnvBox(ep_length=20), n_envs=n_envs, seed=0)
    model = OTPR("MlpPolicy", env, train_freq=train_freq, seed=0, **FAST)
    model.pretrain(identity_demos(), n_steps=20)
    model.learn(60)
    assert model.num_timesteps >= 60 and model._n_updates > 0


def test_run_dict_observations_with_callbacks(tmp_path):
    env = PointGoalEnv()
    model = OTPR("MultiInputPolicy", env, seed=0, **FAST)
    model.pretrain(point_goal_demos(5), n_steps=20)
    checkpoint = CheckpointCallback(save_freq=25, save_path=str(tmp_path), name_prefix="otpr", save_replay_buffer=True)
    evaluation = EvalCallback(PointGoalEnv(), eval_freq=40, n_eval_episodes=2)
    model.learn(80, callback=[checkpoint, evaluation], progress_bar=True)
    assert sorted(p.name for p in tmp_path.glob("otpr_*_steps.zip"))
    assert evaluation.last_mean_reward <= 0
    mean, std = evaluate_policy(model, PointGoalEnv(), n_eval_episodes=2)
    assert np.isfinite(mean)


@pytest.mark.parametrize("guidance", GUIDANCE)
@pytest.mark.parametrize("use_mask", [True, False])
def test_ablation_switches(guidance, use_mask):
    kwargs = dict(FAST)
    kwargs["policy_kwargs"] = dict(FAST["policy_kwargs"], guidance=guidance)
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), use_mask=use_mask, seed=0, **kwargs)
    model.pretrain(identity_demos(), n_steps=10)
    model.learn(40)
    assert model._n_updates > 0


def test_relation_cost_mixing():
    # float32 pairs: `expected` below uses the float32 critic (the bfloat16 pairs are tested in test_otpr_fast_paths).
    kwargs = {**FAST, "policy_kwargs": {**FAST["policy_kwargs"], "pair_precision": "float32"}}
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), relation_weight=0.5, seed=0, **kwargs)
    model.pretrain(identity_demos(), n_steps=10)
    model.learn(30)
    policy = model.policy
    assert policy.guidance.uses_relation_cost and policy.guidance.keypoint_obs.shape == (FAST["dual_kwargs"]["n_keypoints"], 1)
    assert len(policy.guidance.reference_actions) == model.dual_kwargs["reference_actions"] > 0  # u comes from the references
    # H during collection uses exactly the cost the potentials were trained with: (1 - w)(-Q / scale) + w g.
    policy.guidance.mark_ready()
    obs, act = th.linspace(-1, 1, 5)[:, None], th.linspace(1, -1, 5)[:, None]
    z, _ = policy.candidate_scores(obs, act)
    relation = KeypointRelationCost(policy.guidance.keypoint_obs, policy.guidance.keypoint_actions, rho=0.1)
    with th.no_grad():
        advantage = policy.critic.min(obs, act) - policy.value(obs)
        cost = 0.5 * (-advantage / policy.scales.adv_spread) + 0.5 * relation.paired(obs, act)
        expected = policy.guidance.state_potential(obs) + policy.guidance.v(act) - cost  # u as H uses it (from the references)
    th.testing.assert_close(z, expected)
    th.testing.assert_close(model.policy.guidance.trainer.solver.cost.matrix(obs, act).diagonal(), cost)


def test_action_chunking_wrapper():
    env = ActionChunkWrapper(PointGoalEnv(max_steps=7), chunk_size=3)
    assert env.action_space.shape == (6,)
    env.reset(seed=0)
    total_steps, done = 0, False
    while not done:
        _, reward, term, trunc, info = env.step(np.zeros(6, np.float32))
        total_steps += info["chunk_steps"]
        assert reward == -info["chunk_steps"]  # rewards summed over the executed actions
        done = term or trunc
    assert total_steps == 7  # the last chunk stopped early at truncation
    model = OTPR("MultiInputPolicy", env, use_mask=False, seed=0, **FAST)  # OTPR-U needs no demonstrations
    model.learn(40)
    assert model._n_updates > 0


def test_bad_configuration():
    from gymnasium.spaces import Discrete
    from stable_baselines3.common.envs import IdentityEnv

    with pytest.raises(ValueError, match="Box"):
        OTPR("MlpPolicy", IdentityEnv(space=Discrete(3)))
    with pytest.raises(ValueError, match="n_candidates"):
        OTPR("MlpPolicy", IdentityEnvBox(), policy_kwargs=dict(n_candidates=0))
    with pytest.raises(ValueError, match="guidance"):
        OTPR("MlpPolicy", IdentityEnvBox(), policy_kwargs=dict(guidance="magic"))
    model = OTPR("MlpPolicy", IdentityEnvBox(), **FAST)
    with pytest.raises(ValueError, match="demonstration actions have shape"):
        model.pretrain(point_goal_demos(1), n_steps=1)
    bad = identity_demos()
    bad.rewards[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bad._check_finite()


class _NaNRewardEnv(IdentityEnvBox):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


def test_nan_from_the_environment_raises():
    model = OTPR("MlpPolicy", _NaNRewardEnv(ep_length=20), use_mask=False, seed=0, **FAST)
    with pytest.raises(ValueError, match="NaN or infinite observations or rewards"):
        model.learn(10)


def test_ddim_chain_with_graph_matches_the_sampler_and_reaches_the_actor():
    model = OTPR("MlpPolicy", IdentityEnvBox(), seed=0, **FAST)
    policy = model.policy
    obs, noise = th.linspace(-1, 1, 6)[:, None], th.randn(6, 1, generator=th.Generator().manual_seed(0))
    with_graph = policy.schedule.ddim_sample(policy.actor, obs, noise, policy.ddim_steps, requires_grad=True)
    th.testing.assert_close(with_graph.detach(), policy.sample_actions(obs, noise, use_ema=False), rtol=0, atol=1e-6)
    with_graph.sum().backward()
    assert all(p.grad is not None for p in policy.actor.parameters())
    assert policy.sample_actions(obs, noise, use_ema=False).grad_fn is None


@pytest.mark.parametrize("eta", [0.0, 20.0])
def test_dql_actor_follows_the_q_gradient(eta):
    # A fixed critic that prefers a = 0.5 everywhere; the replay actions (the demonstrations) are near a = s.
    model = OTPR(
        "MlpPolicy",
        IdentityEnvBox(),
        seed=0,
        **{**FAST, "policy_kwargs": {**FAST["policy_kwargs"], "guidance": "dql", "guidance_kwargs": {"eta": eta}}},
    )
    model.pretrain(identity_demos(), n_steps=300, add_to_replay_buffer=True)
    policy = model.policy
    policy.critic.min = lambda obs, act: -(act - 0.5).square().sum(-1)  # type: ignore[method-assign]
    policy.guidance.mark_ready()
    obs = policy.prepare_obs(th.linspace(-1, 1, 64)[:, None])
    noise = th.zeros(64, 1)

    def gap() -> float:
        return float((policy.sample_actions(obs, noise, use_ema=False) - 0.5).abs().mean())

    before = gap()
    logs = [model._actor_update() for _ in range(60)]
    if eta == 0:
        assert "actor_q_loss" not in logs[-1] and gap() > 0.5 * before  # score matching alone: stays near a = s
    else:
        assert np.isfinite(logs[-1]["actor_q_loss"]) and gap() < 0.5 * before


def test_running_scales_start_at_the_first_batch_then_move_by_one_percent():
    from otpr_sb3.critics import RunningScales

    scales = RunningScales()
    q, adv = th.tensor([1.0, 3.0, 5.0]), th.tensor([-1.0, 0.0, 1.0])
    scales.update(q, adv)
    th.testing.assert_close(scales.q_spread, q.std())
    th.testing.assert_close(scales.adv_spread, adv.std())
    th.testing.assert_close(scales.q_abs_mean, th.tensor(3.0))
    scales.update(10 * q, adv)
    th.testing.assert_close(scales.q_spread, 0.99 * q.std() + 0.01 * (10 * q).std())
    th.testing.assert_close(scales.q_abs_mean, th.tensor(0.99 * 3.0 + 0.01 * 30.0))
    assert int(scales.count) == 2
    scales.update(th.zeros(3), th.zeros(3))  # no spread: floored, never 0
    assert float(scales.adv_spread) > 0 and float(scales.q_spread) > 0
