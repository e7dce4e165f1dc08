"""Action chunking: execute k actions per step, usable with any algorithm."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ActionChunkWrapper(gym.Wrapper):
    """Execute a chunk of ``chunk_size`` actions as one step.

    The action space becomes the flattened chunk (``chunk_size * act_dim``, same bounds). Rewards are summed
    (undiscounted) over the executed actions; the chunk stops early on termination or truncation, and
    ``info["chunk_steps"]`` says how many actions ran.

    Parameters
    ----------
    env : gymnasium.Env
        With a ``Box`` action space.
    chunk_size : int
        Actions per step, >= 1.
    """

    def __init__(self, env: gym.Env, chunk_size: int) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError("ActionChunkWrapper needs a Box action space")
        if chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.inner_shape = env.action_space.shape
        low = np.tile(env.action_space.low.reshape(-1), chunk_size)
        high = np.tile(env.action_space.high.reshape(-1), chunk_size)
        self.action_space = spaces.Box(low, high, dtype=env.action_space.dtype)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:  # noqa: D102
        actions = np.asarray(action).reshape(self.chunk_size, *self.inner_shape)
        total = 0.0
        obs: Any = None
        terminated, truncated = False, False
        info: dict[str, Any] = {}
        steps = 0
        for a in actions:
            obs, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        info = dict(info)
        info["chunk_steps"] = steps
        return obs, total, terminated, truncated, info
