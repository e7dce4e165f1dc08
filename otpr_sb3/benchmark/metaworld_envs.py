"""Meta-World tasks as benchmark envs: one task family each, a sparse success reward, and reproducible resets.

Meta-World (``pip install metaworld``, v3 tasks) gives each task 50 fixed goal and object layouts (its MT1
benchmark). The envs registered here differ from ``gym.make("Meta-World/MT1", ...)`` in three documented ways, so
that they follow the harness's conventions for Fetch:

- **Reset.** ``reset(seed=k)`` picks the layout from ``numpy.random.default_rng(k)``: an evaluation seed names the
  same layout for every method (Meta-World's own wrapper draws it from the env's running generator).
- **Reward.** Sparse, ``0`` on a step that reaches success and ``-1`` otherwise, as Fetch's; Meta-World's shaped
  reward is kept in ``info["dense_reward"]``.
- **Success.** ``info["success"]`` as Meta-World computes it. The episode terminates on the first successful step,
  so success "at any step" (Meta-World's evaluation rule) and success "at the last step" (the harness's rule) are
  the same thing. Without termination, a shaped reward would pay for staying short of success.

Episodes are truncated at ``max_episode_steps`` (the task's cap in :mod:`otpr_sb3.benchmark.tasks`, well inside
Meta-World's 500 where the scripted experts finish far sooner).

The package is an optional extra; it is imported when an env is made, not when this module is.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

#: Seed of the 50 MT1 layouts of each task (fixed: a different seed is a different benchmark).
LAYOUT_SEED = 0

#: Registered id -> (Meta-World task name, episode cap).
METAWORLD_IDS: dict[str, tuple[str, int]] = {
    "MetaWorldPickPlace-v3": ("pick-place-v3", 200),
    "MetaWorldPegInsertSide-v3": ("peg-insert-side-v3", 200),
    "MetaWorldAssembly-v3": ("assembly-v3", 200),
    "MetaWorldStickPull-v3": ("stick-pull-v3", 200),
}


def _import_metaworld() -> Any:
    try:
        import metaworld
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "the Meta-World tasks need the `metaworld` package: `bash scripts/run.sh` installs it, or "
            "`pip install --no-deps metaworld==3.1.1` (see pyproject.toml's note on its mujoco pin)"
        ) from err
    return metaworld


class MetaWorldTask(gym.Wrapper):
    """A Meta-World env whose layout is chosen by the reset seed, with a sparse reward that ends on success.

    Parameters
    ----------
    env : gymnasium.Env
        A Meta-World ``SawyerXYZEnv``.
    layouts : list
        Its MT1 tasks (goal and object layouts).
    """

    def __init__(self, env: gym.Env, layouts: list[Any]) -> None:
        super().__init__(env)
        if not layouts:
            raise ValueError("`layouts` must not be empty")
        self.layouts = layouts
        # The layouts make the goal observable; the env's space, built before any layout, still says it is not.
        env.unwrapped.set_task(layouts[0])  # type: ignore[attr-defined]
        self.observation_space = env.unwrapped.sawyer_observation_space  # type: ignore[attr-defined]
        self._rng = np.random.default_rng()
        self.layout_index = -1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:  # noqa: D102
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.layout_index = int(self._rng.integers(len(self.layouts)))
        self.env.unwrapped.set_task(self.layouts[self.layout_index])  # type: ignore[attr-defined]
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "success": False, "layout": self.layout_index}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:  # noqa: D102
        obs, dense, terminated, truncated, info = self.env.step(action)
        success = bool(info.get("success", False))
        info = {**info, "success": success, "dense_reward": float(dense)}
        return obs, float(success) - 1.0, terminated or success, truncated, info


def make_metaworld_env(task_name: str, max_episode_steps: int = 500, render_mode: str | None = None) -> gym.Env:
    """Make one Meta-World v3 task as a benchmark env (see the module docstring for how it differs from MT1).

    Parameters
    ----------
    task_name : str
        A Meta-World v3 task, e.g. ``"pick-place-v3"``.
    max_episode_steps : int
        Truncation, at most Meta-World's 500.
    render_mode : str, optional

    Raises
    ------
    ValueError
        If ``task_name`` is not a v3 task or ``max_episode_steps`` is outside ``[1, 500]``.
    """
    metaworld = _import_metaworld()
    if task_name not in metaworld.MT1.ENV_NAMES:
        raise ValueError(f"`task_name` must be a Meta-World v3 task, got {task_name!r}")
    if not 1 <= max_episode_steps <= 500:
        raise ValueError(f"`max_episode_steps` must be in [1, 500] (Meta-World's cap), got {max_episode_steps}")
    benchmark = metaworld.MT1(task_name, seed=LAYOUT_SEED)
    env = benchmark.train_classes[task_name](render_mode=render_mode)
    return gym.wrappers.TimeLimit(MetaWorldTask(env, list(benchmark.train_tasks)), max_episode_steps)


def metaworld_expert(env: gym.Env) -> Any:
    """Meta-World's own scripted policy of an env made by :func:`make_metaworld_env`, as ``obs -> action``."""
    _import_metaworld()
    from metaworld.policies import ENV_POLICY_MAP

    unwrapped = env.unwrapped
    names = [name for name, cls in _env_classes().items() if type(unwrapped) is cls]
    if not names:
        raise ValueError(f"{type(unwrapped).__name__} is not a Meta-World v3 env")
    policy = ENV_POLICY_MAP[names[0]]()  # type: ignore[abstract]  # the map's values are concrete subclasses

    def expert(obs: np.ndarray) -> np.ndarray:
        return np.asarray(policy.get_action(obs), dtype=np.float64)

    expert.__name__ = type(policy).__name__
    return expert


def _env_classes() -> dict[str, type]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return dict(ALL_V3_ENVIRONMENTS)


def register_metaworld_envs() -> None:
    """Register :data:`METAWORLD_IDS` with gymnasium (idempotent; metaworld is imported only by ``gym.make``)."""
    for env_id, (task_name, cap) in METAWORLD_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point="otpr_sb3.benchmark.metaworld_envs:make_metaworld_env",
                kwargs={"task_name": task_name, "max_episode_steps": cap},
            )
