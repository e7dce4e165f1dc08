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
