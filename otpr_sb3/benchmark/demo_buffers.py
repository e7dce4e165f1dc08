"""Replay buffers that keep the demonstrations and sample them symmetrically (RLPD's 50/50 batches).

The demonstrations occupy the first slots of the buffer and are never overwritten: once online data fills the
rest, writing wraps to the first slot after them. Every batch takes ``demo_fraction`` of its samples from the
demonstrations and the rest from online data (all from the demonstrations until online data exists). Hindsight
relabelling of goal-conditioned replay mixes into either these buffers or SB3's own dict buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


class _Symmetric:
    """The symmetric sampling, mixed in before SB3's buffer classes (``ReplayBuffer`` or ``DictReplayBuffer``).

    Parameters
    ----------
    demo_fraction : float
        Share of each batch drawn from the demonstrations (RLPD: 0.5).
    *args, **kwargs
        As SB3's buffer (``optimize_memory_usage`` is not supported).
    """

    demo_size: int
    demo_fraction: float
    pos: int
    full: bool
    buffer_size: int

    def __init__(self, *args: Any, demo_fraction: float = 0.5, **kwargs: Any) -> None:
        if kwargs.get("optimize_memory_usage"):
            raise ValueError(f"`optimize_memory_usage` is not supported by {type(self).__name__}")
        if not 0.0 < demo_fraction < 1.0:
            raise ValueError(f"`demo_fraction` must be in (0, 1), got {demo_fraction}")
        super().__init__(*args, **kwargs)
        self.demo_size, self.demo_fraction = 0, float(demo_fraction)

    def freeze_demonstrations(self) -> None:
        """Mark everything stored so far as demonstrations: kept for good and sampled as their own half.

        Raises
        ------
        ValueError
            If the buffer is empty, or full (no room would be left for online data).
        """
        if self.full or self.pos >= self.buffer_size - 1:
            raise ValueError(f"the demonstrations fill the buffer (`buffer_size`={self.buffer_size}); make it larger")
        if self.pos == 0:
            raise ValueError("no demonstrations stored: add them before `freeze_demonstrations`")
        self.demo_size = self.pos

    def add(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().add(*args, **kwargs)  # type: ignore[misc]
        if self.demo_size and self.pos == 0:  # wrapped around: keep the demonstrations
            self.pos = self.demo_size

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> Any:  # noqa: D102
        if not self.demo_size:
            return super().sample(batch_size, env)  # type: ignore[misc]
        return self._get_samples(self._symmetric_indices(batch_size), env=env)  # type: ignore[attr-defined]

    def _symmetric_indices(self, batch_size: int) -> np.ndarray:
        upper = self.buffer_size if self.full else self.pos
        n_online = batch_size - int(round(self.demo_fraction * batch_size)) if upper > self.demo_size else 0
        # numpy's global stream, as SB3's buffers sample (seeded by the algorithm's `set_random_seed`).
        demo = np.random.randint(0, self.demo_size, size=batch_size - n_online)  # noqa: NPY002
        online = np.random.randint(self.demo_size, upper, size=n_online)  # noqa: NPY002
        return np.concatenate([demo, online])


class SymmetricReplayBuffer(_Symmetric, ReplayBuffer):
    """:class:`~stable_baselines3.common.buffers.ReplayBuffer` with kept, symmetrically sampled demonstrations."""


class SymmetricDictReplayBuffer(_Symmetric, DictReplayBuffer):
    """:class:`SymmetricReplayBuffer` for dict observations (SB3's ``DictReplayBuffer``)."""


class HindsightRelabelling:
    """Hindsight relabelling ("future" strategy) of goal-conditioned data, mixed in before a dict replay buffer.

    Each sampled transition, demonstration or online, has its desired goal replaced with probability
    ``her_ratio`` by the achieved goal of a step drawn uniformly from the rest of its episode (that step included),
    and its reward recomputed by the env's ``compute_reward``, as SB3's ``HerReplayBuffer`` does with
    ``n_sampled_goal = 4`` (``her_ratio = 0.8``). An episode ends at a termination or a ``TimeLimit.truncated``
    step; the future of an episode still running is its steps so far. Once the online part of the buffer wraps,
    the unwritten steps of an overwritten episode may draw goals from newer data (the harness sizes its buffers so
    that they never wrap). Only ``sample`` relabels: arrays read directly (OTPR's dual draws its states so) keep
    their stored goals.

    Parameters
    ----------
    *args, **kwargs
        As the buffer it is mixed into (one env: ``n_envs`` must be 1).
    env_id : str
        The gymnasium id whose ``compute_reward(achieved_goal, desired_goal, info)`` gives the relabelled rewards
        (an env is made for it; a name keeps the buffer's saved arguments small).
    her_ratio : float
        Share of sampled transitions relabelled, in ``[0, 1]``.
    """

    n_envs: int
    buffer_size: int
    pos: int
    observations: Any
    next_observations: Any
    to_torch: Any

    def __init__(self, *args: Any, env_id: str, her_ratio: float = 0.8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.n_envs != 1:
            raise ValueError(f"{type(self).__name__} supports one env, got `n_envs`={self.n_envs}")
        if not 0.0 <= her_ratio <= 1.0:
            raise ValueError(f"`her_ratio` must be in [0, 1], got {her_ratio}")
        for key in ("achieved_goal", "desired_goal"):
            if key not in self.observations:
                raise ValueError(f"hindsight relabelling needs goal-conditioned observations with {key!r}")
        self.env_id, self.her_ratio = env_id, float(her_ratio)
        self.episode_end = np.zeros(self.buffer_size, dtype=np.int64)  # exclusive; of the steps stored so far
        self._current_start = 0
        self._compute_reward: Any = None

    def add(self, obs: Any, next_obs: Any, action: Any, reward: Any, done: Any, infos: list[dict[str, Any]]) -> None:  # noqa: D102
        pos = self.pos
        if pos < self._current_start:  # the write wrapped: the running episode continues as a new one
            self._current_start = pos
        super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[misc]
        start = self._current_start
        self.episode_end[start : pos + 1] = pos + 1
        if bool(np.asarray(done).reshape(-1)[0]) or infos[0].get("TimeLimit.truncated", False):
            self._current_start = self.pos  # the next step starts an episode

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> Any:
        data = super()._get_samples(batch_inds, env)  # type: ignore[misc]
        relabel = np.random.random(len(batch_inds)) < self.her_ratio  # noqa: NPY002  (SB3's seeded global stream)
        if not relabel.any():
            return data
        idx = batch_inds[relabel]
        start, end = idx, self.episode_end[idx]
        future = start + (np.random.random(len(idx)) * (end - start)).astype(np.int64)  # noqa: NPY002
        goals = self.next_observations["achieved_goal"][future, 0]
        achieved = self.next_observations["achieved_goal"][idx, 0]
        if self._compute_reward is None:
            import gymnasium as gym

            self._compute_reward = gym.make(self.env_id).unwrapped.compute_reward  # type: ignore[attr-defined]
        rewards = np.asarray(self._compute_reward(achieved, goals, [{} for _ in idx]), dtype=np.float32)
        where = np.flatnonzero(relabel)
        goals_t = self.to_torch(goals).to(data.observations["desired_goal"].dtype)
        data.observations["desired_goal"][where] = goals_t
        data.next_observations["desired_goal"][where] = goals_t
        data.rewards[where] = self.to_torch(rewards.reshape(-1, 1)).to(data.rewards.dtype)
        return data

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_compute_reward"] = None  # made again from `env_id` after loading
        return state


class HerDictReplayBuffer(HindsightRelabelling, DictReplayBuffer):
    """SB3's ``DictReplayBuffer`` with :class:`HindsightRelabelling` (the ``otpr-her`` method's replay)."""


class HerSymmetricDictReplayBuffer(HindsightRelabelling, SymmetricDictReplayBuffer):
    """:class:`SymmetricDictReplayBuffer` with :class:`HindsightRelabelling` (the ``rlpd-her`` method's replay)."""
