"""Tiny environments and demonstrations for the OTPR tests."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.envs import IdentityEnvBox

from otpr_sb3 import Demonstrations

SMALL = dict(actor_hidden_dim=32, actor_n_blocks=1, time_dim=8, critic_hidden=(32, 32))
FAST = dict(
    learning_starts=10,
    batch_size=32,
    actor_kwargs={"batch_size": 32},
    dual_kwargs={"batch_size": 16, "n_keypoints": 4},
    dual_start=5,
    policy_kwargs=SMALL,
)


class PointGoalEnv(gym.Env):
    """2-D point reaching a goal; dict observations like the robotics tasks."""

    def __init__(self, max_steps: int = 20):
        box = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.observation_space = spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.max_steps = max_steps

    def _obs(self):
        return {"observation": self.pos.copy(), "achieved_goal": self.pos.copy(), "desired_goal": self.goal.copy()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.2 * np.asarray(action, np.float32), -2, 2).astype(np.float32)
        self.t += 1
        success = float(np.linalg.norm(self.pos - self.goal) < 0.1)
        return self._obs(), success - 1.0, bool(success), self.t >= self.max_steps, {"is_success": bool(success)}


def identity_demos(n=400, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    act = np.clip(obs + noise * rng.normal(size=(n, 1)), -1, 1).astype(np.float32)
    rew = (np.abs(act - obs) <= 0.05).astype(np.float32).reshape(-1)
    trunc = np.zeros(n, bool)
    trunc[99::100] = True
    return Demonstrations.from_arrays(obs, act, rew, truncations=trunc, next_observations=np.roll(obs, -1, axis=0))


def point_goal_demos(n_episodes=20, seed=0):
    env = PointGoalEnv()
    rng = np.random.default_rng(seed)
    obs_list, act_list, rew, term, trunc, next_list = [], [], [], [], [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            a = np.clip(5 * (obs["desired_goal"] - obs["observation"]) + 0.2 * rng.normal(size=2), -1, 1).astype(np.float32)
            nxt, r, te, tr, _ = env.step(a)
            obs_list.append(obs)
            next_list.append(nxt)
            act_list.append(a)
            rew.append(r)
            term.append(te)
            trunc.append(tr)
            obs, done = nxt, te or tr
    stack = lambda ds: {k: np.stack([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
    return Demonstrations.from_arrays(
        stack(obs_list), np.array(act_list), np.array(rew), np.array(term), np.array(trunc), stack(next_list)
    )


__all__ = ["FAST", "SMALL", "fast", "IdentityEnvBox", "PointGoalEnv", "identity_demos", "point_goal_demos"]


#: Short names the tests use for keys of OTPR's ``dual_kwargs`` and ``actor_kwargs``.
DUAL_NAMES = {
    "dual_method": "method",
    "dual_learning_rate": "learning_rate",
    "dual_batch_size": "batch_size",
    "dual_steps": "steps",
    "dual_steps_per_batch": "steps_per_batch",
    "reference_actions": "reference_actions",
    "n_keypoints": "n_keypoints",
    "dual_eval_freq": "eval_freq",
    "dual_eval_batch_size": "eval_batch_size",
}
ACTOR_NAMES = {
    "actor_batch_size": "batch_size",
    "actor_ema": "ema",
    "actor_loss": "loss",
    "candidate_batch_size": "candidate_batch_size",
    "actor_reference_actions": "reference_actions",
}


def fast(**overrides):
    """OTPR keyword arguments: FAST with ``overrides``.

    The dicts (``dual_kwargs``, ``actor_kwargs``, ``policy_kwargs``) are merged key by key, and the names of
    ``DUAL_NAMES`` and ``ACTOR_NAMES`` go into their dict.
    """
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in FAST.items()}
    for key, value in overrides.items():
        if key in DUAL_NAMES:
            out["dual_kwargs"][DUAL_NAMES[key]] = value
        elif key in ACTOR_NAMES:
            out["actor_kwargs"][ACTOR_NAMES[key]] = value
        elif isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_script(relpath: str, name: str | None = None):
    """Import a script of the repository (``examples/...``, ``benchmarks/...``) as a module, its folder on the path."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relpath
    sys.path.insert(0, str(path.parent))  # its sibling modules (``from claims_tables import ...``)
    try:
        spec = importlib.util.spec_from_file_location(name or path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def small_run_spec(root, env_id: str, method: str, dataset: str, **overrides):
    """A benchmark ``RunSpec`` sized for tests: small networks, 200 steps, one-episode evaluations, under ``root``."""
    from otpr_sb3.benchmark.methods import get_method
    from otpr_sb3.benchmark.runner import RunSpec

    from_scratch = get_method(method).algo in ("sac", "dsrl", "ibrl", "rlpd")
    otpr_kwargs = {k: v for k, v in fast(learning_starts=20).items() if k != "policy_kwargs"}
    base = dict(
        env_id=env_id,
        method=method,
        seed=0,
        steps=200,
        dataset=dataset,
        eval_freq=100,
        eval_episodes=1,
        final_eval_episodes=2,
        pretrain_steps=50,
        runs_dir=str(root / "runs"),
        data_path=str(root / "minari"),
        kwargs=dict(learning_starts=20, batch_size=32) if from_scratch else otpr_kwargs,
        policy_kwargs=dict(net_arch=[32, 32]) if from_scratch else SMALL,
    )
    return RunSpec(**{**base, **overrides})
