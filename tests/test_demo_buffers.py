"""Symmetric replay (SAC+demos): demonstrations are kept for good and make half of every batch."""

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.utils import set_random_seed

from otpr_sb3 import Demonstrations
from otpr_sb3.benchmark.demo_buffers import SymmetricDictReplayBuffer, SymmetricReplayBuffer
from otpr_sb3.demonstrations import add_demonstrations

BOX = spaces.Box(-1.0, 1.0, (1,), np.float32)
ACTIONS = spaces.Box(-2.0, 2.0, (1,), np.float32)


def demos(n=10):
    obs = np.full((n, 1), -1.0, np.float32)  # demonstrations are marked by observation -1
    return Demonstrations.from_arrays(obs, np.full((n, 1), 2.0, np.float32), np.ones(n, np.float32), next_observations=obs)


def add_online(buffer, n, dict_obs=False):
    for _ in range(n):
        o = np.full((1, 1), 0.5, np.float32)
        if dict_obs:
            o = {"observation": o}
        buffer.add(o, o, np.zeros((1, 1), np.float32), np.zeros(1), np.zeros(1), [{}])


def test_digest_changes_with_any_number_and_not_with_dict_order():
    base = demos()
    assert base.digest() == demos().digest() and len(base.digest()) == 40
    for name in ("observations", "actions", "rewards", "next_observations"):
        other = demos()
        array = getattr(other, name)
        array.reshape(-1)[3] = np.nextafter(array.reshape(-1)[3], np.float32(np.inf))  # one float32 ulp
        assert other.digest() != base.digest(), name
    other = demos()
    other.truncations[-1] = not other.truncations[-1]
    assert other.digest() != base.digest()
    obs, acts = {"a": np.zeros((4, 1), np.float32), "b": np.ones((4, 2), np.float32)}, np.zeros((4, 1), np.float32)
    swapped = {"b": obs["b"], "a": obs["a"]}
    one = Demonstrations.from_arrays(obs, acts, next_observations=obs)
    assert one.digest() == Demonstrations.from_arrays(swapped, acts, next_observations=swapped).digest()
    renamed = {"a": obs["a"], "c": obs["b"]}  # the same numbers under another key are other data
    assert one.digest() != Demonstrations.from_arrays(renamed, acts, next_observations=renamed).digest()


def test_demonstrations_survive_wraparound_and_fill_half_of_each_batch():
    set_random_seed(0)
    buffer = SymmetricReplayBuffer(30, BOX, ACTIONS, device="cpu")
    add_demonstrations(buffer, demos(10), ACTIONS)
    np.testing.assert_allclose(buffer.actions[:10], 1.0)  # scaled to [-1, 1], as SB3 stores actions
    buffer.freeze_demonstrations()
    batch = buffer.sample(64)
    assert (batch.observations == -1).all()  # no online data yet: all from the demonstrations
    add_online(buffer, 100)  # wraps around several times
    assert buffer.full and 10 <= buffer.pos < 30
    np.testing.assert_allclose(buffer.observations[:10], -1.0)  # never overwritten
    assert (buffer.observations[10:] == 0.5).all()
    batch = buffer.sample(64)
    assert int((batch.observations == -1).sum()) == 32


def test_dict_buffer_and_failure_modes():
    space = spaces.Dict({"observation": BOX})
    buffer = SymmetricDictReplayBuffer(20, space, ACTIONS, device="cpu", demo_fraction=0.25)
    with pytest.raises(ValueError, match="no demonstrations"):
        buffer.freeze_demonstrations()
    obs = {"observation": np.full((5, 1), -1.0, np.float32)}
    five = Demonstrations.from_arrays(obs, np.zeros((5, 1), np.float32), np.zeros(5, np.float32), next_observations=obs)
    add_demonstrations(buffer, five, ACTIONS)
    buffer.freeze_demonstrations()
    add_online(buffer, 40, dict_obs=True)
    assert (buffer.observations["observation"][:5] == -1).all()
    batch = buffer.sample(40)
    assert int((batch.observations["observation"] == -1).sum()) == 10
    with pytest.raises(ValueError, match="demo_fraction"):
        SymmetricReplayBuffer(20, BOX, ACTIONS, demo_fraction=1.0)
    small = SymmetricReplayBuffer(5, BOX, ACTIONS, device="cpu")
    add_demonstrations(small, demos(4), ACTIONS)
    with pytest.raises(ValueError, match="fill the buffer"):
        small.freeze_demonstrations()


def test_add_demonstrations_to_a_multi_env_buffer_keeps_every_transition():
    from stable_baselines3.common.buffers import ReplayBuffer

    n = 7
    obs = np.arange(n, dtype=np.float32)[:, None]
    trunc = np.zeros(n, bool)
    trunc[3] = True
    five = Demonstrations.from_arrays(
        obs, np.full((n, 1), -2.0, np.float32), np.arange(n, dtype=np.float32), next_observations=obs + 1, truncations=trunc
    )
    buffer = ReplayBuffer(30, BOX, ACTIONS, device="cpu", n_envs=3, handle_timeout_termination=True)  # 10 rows
    add_demonstrations(buffer, five, ACTIONS)
    assert buffer.pos == 3  # ceil(7 / 3) rows
    stored = buffer.observations[:3, :, 0].reshape(-1)
    np.testing.assert_array_equal(stored, [0, 1, 2, 3, 4, 5, 6, 0, 1])  # the last row wraps to the first transitions
    np.testing.assert_array_equal(buffer.rewards[:3].reshape(-1), stored)
    np.testing.assert_array_equal(buffer.next_observations[:3, :, 0].reshape(-1), stored + 1)
    np.testing.assert_allclose(buffer.actions[:3], -1.0)  # -2 in [-2, 2] is -1 in SB3's units
    assert buffer.timeouts[:3].reshape(-1).tolist() == [s == 3 for s in stored]
    with pytest.raises(ValueError, match="buffer_size"):
        add_demonstrations(ReplayBuffer(6, BOX, ACTIONS, device="cpu", n_envs=3), five, ACTIONS)  # 2 rows
