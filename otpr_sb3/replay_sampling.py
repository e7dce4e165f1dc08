"""Independent draws of replay states and replay actions, for the dual (which couples the two marginals).

``ReplayBuffer.sample`` draws transitions, pairs of a state with its own action, from NumPy's global stream; the dual
needs the two marginals drawn independently, from a torch generator it owns (saved with the model, so a resumed run
draws the same minibatches). States go through the buffer's VecNormalize step, as ``sample`` does, and the policy's
preparation.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecNormalize


class _Algorithm(Protocol):
    replay_buffer: ReplayBuffer | None
    _vec_normalize_env: VecNormalize | None
    device: th.device
    policy: Any


class ReplaySampler:
    """Samplers of an algorithm's replay buffer, looked up at each call (``load_replay_buffer`` replaces it).

    Parameters
    ----------
    algorithm : OffPolicyAlgorithm
        Its ``replay_buffer``, ``_vec_normalize_env``, ``device`` and ``policy.prepare_obs`` are used.
    """

    def __init__(self, algorithm: _Algorithm) -> None:
        self.algorithm = algorithm

    def _indices(self, n: int, gen: th.Generator) -> tuple[ReplayBuffer, np.ndarray, np.ndarray]:
        buf = self.algorithm.replay_buffer
        if buf is None or buf.size() == 0:
            raise RuntimeError("the replay buffer is empty: nothing to sample for the dual")
        upper = buf.buffer_size if buf.full else buf.pos
        idx = th.randint(upper, (n,), generator=gen).numpy()
        env_idx = th.randint(buf.n_envs, (n,), generator=gen).numpy()
        return buf, idx, env_idx

    def actions(self, n: int, gen: th.Generator) -> th.Tensor:
        """``n`` replay actions (scaled, as stored), drawn with ``gen``."""
        buf, idx, env_idx = self._indices(n, gen)
        return th.as_tensor(buf.actions[idx, env_idx], device=self.algorithm.device).float()

    def states(self, n: int, gen: th.Generator) -> th.Tensor:
        """``n`` replay states, normalised and prepared as training prepares them, drawn with ``gen``."""
        buf, idx, env_idx = self._indices(n, gen)
        raw: np.ndarray | dict[str, np.ndarray]
        if isinstance(buf, DictReplayBuffer):
            raw = {k: v[idx, env_idx] for k, v in buf.observations.items()}
        else:
            raw = buf.observations[idx, env_idx]
        normalized = buf._normalize_obs(raw, self.algorithm._vec_normalize_env)  # as ReplayBuffer.sample does
        obs: PyTorchObs
        if isinstance(normalized, dict):
            obs = {k: buf.to_torch(v) for k, v in normalized.items()}
        else:
            obs = buf.to_torch(normalized)
        return self.algorithm.policy.prepare_obs(obs)
