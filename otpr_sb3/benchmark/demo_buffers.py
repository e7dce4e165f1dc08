"""Replay buffers that keep the demonstrations and sample them symmetrically (RLPD's 50/50 batches).

The demonstrations occupy the first slots of the buffer and are never overwritten: once online data fills the
rest, writing wraps to the first slot after them. Every batch takes ``demo_fraction`` of its samples from the
demonstrations and the rest from online data (all from the demonstrations until online data exists).
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
