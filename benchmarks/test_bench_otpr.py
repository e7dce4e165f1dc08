"""OTPR on FetchPickAndPlace's spaces: one action (collection and deterministic) and one training step."""

import numpy as np
import pytest

from otpr_sb3 import OTPR


@pytest.fixture(scope="module")
def fetch_model():
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env = gym.make("FetchPickAndPlace-v4")
    model = OTPR("MultiInputPolicy", env, learning_starts=0, dual_start=1, seed=0, device="cpu")
    model.learn(300)  # replay data, statistics and a ready guidance (fine-tuning from scratch, defaults)
    obs, _ = env.reset(seed=0)
    return model, obs


@pytest.mark.parametrize("guidance", ["compatibility"])
def test_action_latency_collection(benchmark, fetch_model, guidance):
    model, obs = fetch_model
    benchmark.group = "OTPR one action"
    benchmark(model.predict, obs, deterministic=False)


def test_action_latency_deterministic(benchmark, fetch_model):
    model, obs = fetch_model
    benchmark.group = "OTPR one action"
    benchmark(model.predict, obs, deterministic=True)


def test_training_step(benchmark, fetch_model):
    model, _ = fetch_model
    benchmark.group = "OTPR one training step (IQL, guidance every 2, actor every 2)"
    benchmark.pedantic(model.train, args=(1, model.batch_size), rounds=40, warmup_rounds=2)
    assert np.isfinite(model.logger.name_to_value.get("train/critic_loss", 0.0))


def _switch(set_mode):
    set_mode(False)  # collection
    set_mode(True)  # training: SB3 switches twice per env step


@pytest.mark.parametrize("way", ["set_training_mode", "nn.Module.train"])
def test_mode_switch(benchmark, fetch_model, way):
    policy = fetch_model[0].policy
    benchmark.group = "OTPR mode switches of one env step"
    benchmark(_switch, policy.set_training_mode if way == "set_training_mode" else policy.train)
    assert {m.training for m in policy.modules()} == {True}


@pytest.mark.parametrize("pairs", ["48x48", "256x9"])
@pytest.mark.parametrize("way", ["fused", "autocast"])
def test_critic_pairs(benchmark, way, pairs):
    """The critics on the dual's 48 x 48 pairs and on the actor's 256 states x 9 actions (8 reference actions and
    its replay action), bfloat16 hidden layers, Fetch's sizes: the fused path against autocast's."""
    import torch as th
    from bench_otpr_speed import autocast_split_min  # on the path: benchmarks/conftest.py

    from otpr_sb3.critics import TwinQCritic

    th.manual_seed(0)
    critic = TwinQCritic(31, 4, pair_precision="bfloat16")
    critic.keep_pair_weights(th.optim.Adam(critic.parameters()))  # as OTPR's critic
    obs = th.randn(48 if pairs == "48x48" else 256, 31)
    act = th.rand(1, 48, 4) if pairs == "48x48" else th.rand(256, 9, 4)
    shape = (obs.shape[0], act.shape[1])
    benchmark.group = f"OTPR critics on {pairs} pairs (bfloat16)"
    with th.no_grad():
        if way == "fused":
            out = benchmark(critic._split_min, obs, act, shape)
        else:
            out = benchmark(autocast_split_min, critic, obs, act, shape)
        assert th.equal(out, critic._split_min(obs, act, shape))  # the same numbers
