"""Expert demonstrations: from a Minari dataset (object or local id) or plain arrays."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

Obs = np.ndarray | dict[str, np.ndarray]


def _take(obs: Obs, idx: np.ndarray | slice) -> Obs:
    return {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]


def _concat(parts: list[Obs]) -> Obs:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)  # type: ignore[arg-type]


def _length(obs: Obs) -> int:
    return len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)


@contextlib.contextmanager
def minari_datasets_path(path: str | None) -> Iterator[None]:
    """Point Minari at the local datasets in ``path`` (``$MINARI_DATASETS_PATH``) inside the block, then restore it."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    if path is not None:
        os.environ["MINARI_DATASETS_PATH"] = path
    try:
        yield
    finally:
        if path is not None:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous


@dataclass
class Demonstrations:
    """Transitions ``(s, a, r, s', terminated, truncated)`` of expert episodes.

    Attributes
    ----------
    observations, next_observations : array or dict of arrays, first dimension N
    actions : array of shape (N, act_dim), in the environment's action units
    rewards, terminations, truncations : arrays of shape (N,)
    """

    observations: Obs
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: Obs
    terminations: np.ndarray
    truncations: np.ndarray

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions, dtype=np.float32)
        if self.actions.ndim == 1:
            self.actions = self.actions[:, None]
        if self.actions.ndim != 2:
            raise ValueError(f"`actions` must have shape (N, act_dim), got {self.actions.shape}")
        n = len(self.actions)
        if n == 0:
            raise ValueError(
                "`actions`: no transitions (without `next_observations`, each episode's last step is dropped "
                "because its next state is unknown: pass `next_observations`, or episodes of 2 steps or more)"
            )
        for name in ("observations", "next_observations"):
            value = getattr(self, name)
            if not isinstance(value, dict | np.ndarray):
                raise TypeError(f"`{name}` must be an array or a dict of arrays, got {type(value).__name__}")
            if _length(value) != n:
                raise ValueError(f"`{name}` has {_length(value)} rows but `actions` has {n}")
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.terminations = np.asarray(self.terminations, dtype=bool).reshape(-1)
        self.truncations = np.asarray(self.truncations, dtype=bool).reshape(-1)
        for name in ("rewards", "terminations", "truncations"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"`{name}` has {len(getattr(self, name))} entries, expected {n}")
        self._check_finite()

    def __len__(self) -> int:
        return len(self.actions)

    @classmethod
    def from_arrays(
        cls,
        observations: Obs,
        actions: np.ndarray,
        rewards: np.ndarray | None = None,
        terminations: np.ndarray | None = None,
        truncations: np.ndarray | None = None,
        next_observations: Obs | None = None,
    ) -> Demonstrations:
        """Build from per-transition arrays.

        Without ``next_observations``, the next observation is the following row within an episode (episodes
        end where ``terminations | truncations``); the last transition of each episode then has no successor
        and is dropped, since its next state is unknown.
        """
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim == 1:
            actions = actions[:, None]
        n = len(actions)
        if _length(observations) != n:
            raise ValueError(f"`observations` has {_length(observations)} rows but `actions` has {n}")
        rewards = np.zeros(n, np.float32) if rewards is None else np.asarray(rewards, np.float32).reshape(-1)
        term = np.zeros(n, bool) if terminations is None else np.asarray(terminations, bool).reshape(-1)
        trunc = np.zeros(n, bool) if truncations is None else np.asarray(truncations, bool).reshape(-1)
        for name, arr in (("rewards", rewards), ("terminations", term), ("truncations", trunc)):
            if len(arr) != n:
                raise ValueError(f"`{name}` has {len(arr)} entries, expected {n}")
        if next_observations is None:
            end = term | trunc
            end[-1] = True
            keep = ~end
            nxt = _take(observations, np.flatnonzero(keep) + 1)
            observations = _take(observations, keep)
            actions, rewards, term, trunc = actions[keep], rewards[keep], term[keep], trunc[keep]
            next_observations = nxt
        elif _length(next_observations) != n:
            raise ValueError(f"`next_observations` has {_length(next_observations)} rows, expected {n}")
        return cls(observations, actions, rewards, next_observations, term, trunc)

    @classmethod
    def from_minari(cls, dataset: Any, data_path: str | None = None) -> Demonstrations:
        """Load every episode of a Minari dataset (a ``MinariDataset`` or a dataset id).

        Parameters
        ----------
        dataset : minari.MinariDataset or str
            The dataset, or its id in the local Minari directory (no download is attempted).
        data_path : str, optional
            Directory of local datasets (default: Minari's, i.e. ``$MINARI_DATASETS_PATH``).
        """
        import minari

        if isinstance(dataset, str):
            with minari_datasets_path(data_path):
                dataset = minari.load_dataset(dataset, download=False)
        parts: dict[str, list[Any]] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc")}
        for ep in dataset.iterate_episodes():
            T = len(ep.actions)
            parts["obs"].append(_take(ep.observations, slice(0, T)))
            parts["next"].append(_take(ep.observations, slice(1, T + 1)))
            parts["act"].append(np.asarray(ep.actions, np.float32).reshape(T, -1))
            parts["rew"].append(np.asarray(ep.rewards, np.float32))
            parts["term"].append(np.asarray(ep.terminations, bool))
            parts["trunc"].append(np.asarray(ep.truncations, bool))
        if not parts["act"]:
            raise ValueError("the Minari dataset has no episodes")
        return cls(
            _concat(parts["obs"]),
            np.concatenate(parts["act"]),
            np.concatenate(parts["rew"]),
            _concat(parts["next"]),
            np.concatenate(parts["term"]),
            np.concatenate(parts["trunc"]),
        )

    def digest(self) -> str:
        """Return the SHA-1 of the transitions: every array's name, dtype, shape and bytes (dict keys sorted).

        Two datasets have the same digest exactly when they hold the same numbers; a run records it, so that a
        dataset recorded again (on another machine, say) can be told from the one a run was made with.
        """
        h = hashlib.sha1()
        for name in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations"):
            value = getattr(self, name)
            for key, array in sorted(value.items()) if isinstance(value, dict) else [("", value)]:
                a = np.ascontiguousarray(array)
                h.update(f"{name}/{key}:{a.dtype.str}:{a.shape}".encode())
                h.update(a.tobytes())
        return h.hexdigest()

    def _check_finite(self) -> None:
        for name in ("observations", "next_observations", "actions", "rewards"):
            arr = getattr(self, name)
            values = arr.values() if isinstance(arr, dict) else [arr]
            if not all(np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in values):
                raise ValueError(f"demonstration {name} contain NaN or infinite values")

    def clipped(self, action_space: spaces.Box) -> Demonstrations:
        """Return a copy with the actions clipped to the bounds of ``action_space``.

        The explicit opt-in for demonstrations recorded outside the bounds, which :meth:`check_spaces` refuses.
        """
        low, high = (np.broadcast_to(b, action_space.shape).reshape(-1) for b in (action_space.low, action_space.high))
        return Demonstrations(
            self.observations,
            np.clip(self.actions, low, high),
            self.rewards,
            self.next_observations,
            self.terminations,
            self.truncations,
        )

    def check_actions(self, action_space: spaces.Box) -> None:
        """Raise ``ValueError`` if the actions do not have the shape of ``action_space`` or leave its bounds."""
        if self.actions.shape[1:] != (int(np.prod(action_space.shape)),):
            raise ValueError(
                f"demonstration actions have shape {self.actions.shape[1:]}, the environment's are {action_space.shape}"
            )
        low, high = (np.broadcast_to(b, action_space.shape).reshape(-1) for b in (action_space.low, action_space.high))
        tol = 1e-6 * np.maximum(1.0, high - low)
        outside = (self.actions < low - tol) | (self.actions > high + tol)
        if outside.any():
            raise ValueError(
                f"{int(outside.any(axis=1).sum())} demonstration actions leave the action space's bounds "
                f"[{low.min():g}, {high.max():g}] (they range over [{self.actions.min():g}, {self.actions.max():g}]); "
                "record them in the environment's units, or pass `demos.clipped(env.action_space)` to clip them"
            )

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Box) -> None:
        """Raise ``ValueError`` if the demonstrations do not match the environment's spaces (actions: shape and bounds)."""
        self.check_actions(action_space)
        if isinstance(observation_space, spaces.Dict):
            if not isinstance(self.observations, dict) or set(self.observations) != set(observation_space.spaces):
                raise ValueError(f"demonstration observations must be a dict with keys {sorted(observation_space.spaces)}")
            for k, sub in observation_space.spaces.items():
                if self.observations[k].shape[1:] != sub.shape:
                    raise ValueError(
                        f"demonstration observations[{k!r}] have shape {self.observations[k].shape[1:]}, expected {sub.shape}"
                    )
        else:
            if isinstance(self.observations, dict):
                raise ValueError("demonstration observations are a dict but the environment's are not")
            if self.observations.shape[1:] != observation_space.shape:
                raise ValueError(
                    f"demonstration observations have shape {self.observations.shape[1:]}, "
                    f"the environment's are {observation_space.shape}"
                )


def add_demonstrations(buffer: Any, demos: Demonstrations, action_space: spaces.Box) -> None:
    """Store demonstrations in an SB3 replay buffer, with actions scaled to ``[-1, 1]`` as SB3 stores them.

    Parameters
    ----------
    buffer : stable_baselines3.common.buffers.ReplayBuffer or DictReplayBuffer
        The buffer of any off-policy algorithm (OTPR, SAC, TD3, ...), with ``n_envs`` columns.
    demos : Demonstrations
    action_space : gymnasium.spaces.Box
        The environment's action space (the demonstrations are in its units).

    Notes
    -----
    Truncated steps carry ``TimeLimit.truncated`` so that they bootstrap, as SB3 does for online data. A buffer
    of ``n_envs`` columns takes ``n_envs`` transitions per row; when ``len(demos)`` is not a multiple of it, the
    last row is completed with the first transitions again rather than dropping any.

    Raises
    ------
    ValueError
        If the buffer cannot hold the demonstrations, or their actions leave the action space's bounds.
    """
    demos.check_actions(action_space)
    n_envs = int(buffer.n_envs)
    rows = -(-len(demos) // n_envs)
    if rows > buffer.buffer_size:
        raise ValueError(
            f"the replay buffer holds {buffer.buffer_size} rows of {n_envs} env(s), "
            f"fewer than the {len(demos)} demonstration transitions; raise `buffer_size`"
        )
    low, high = action_space.low, action_space.high
    scaled = (2.0 * (np.asarray(demos.actions, dtype=np.float64) - low) / (high - low) - 1.0).astype(np.float32)
    order = np.arange(rows * n_envs) % len(demos)
    for row in range(rows):
        idx = order[row * n_envs : (row + 1) * n_envs]
        buffer.add(
            _take(demos.observations, idx),
            _take(demos.next_observations, idx),
            scaled[idx],
            np.asarray(demos.rewards)[idx],
            np.asarray(demos.terminations, dtype=np.float32)[idx],
            [{"TimeLimit.truncated": bool(t)} for t in np.asarray(demos.truncations)[idx]],
        )
