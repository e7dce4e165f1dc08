"""DSRL's view of a task: act in the initial noise of a frozen diffusion actor, decoded by its DDIM sampler.

Diffusion steering (DSRL, Wagenmaker et al. 2025) leaves the pretrained diffusion policy untouched and trains an
ordinary RL agent (SAC) whose actions are the noise that starts the policy's deterministic denoising. Wrapping the
env makes any SB3 algorithm a DSRL agent::

    steered = NoiseSteeringWrapper(gym.make("FetchPush-v4"), OTPR.load("pretrained.zip").policy)
    SAC("MultiInputPolicy", steered).learn(10_000)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from otpr_sb3.policies import OTPRPolicy


class NoiseSteeringWrapper(gym.Wrapper):
    """Actions are a frozen diffusion actor's initial noise ``w``; the env receives ``DDIM(obs, w)``.

    Parameters
    ----------
    env : gymnasium.Env
        The task, with the observation and action spaces ``policy`` was built for.
    policy : OTPRPolicy
        The diffusion policy (its EMA actor decodes; its weights are never changed here).
    magnitude : float
        The noise box ``[-magnitude, magnitude]^act_dim`` (DSRL's action magnitude); the noise mode ``w = 0``
        gives the policy's deterministic action.

    Notes
    -----
    ``info["decoded_action"]`` holds the env action of each step.
    """

    def __init__(self, env: gym.Env, policy: OTPRPolicy, magnitude: float = 1.5) -> None:
        super().__init__(env)
        if not magnitude > 0 or not np.isfinite(magnitude):
            raise ValueError(f"`magnitude` must be positive and finite, got {magnitude!r}")
        if env.observation_space != policy.observation_space or env.action_space != policy.action_space:
            raise ValueError("`env` must have the observation and action spaces `policy` was built for")
        self.policy, self.magnitude = policy, float(magnitude)
        policy.set_training_mode(False)
        self.action_space = spaces.Box(-self.magnitude, self.magnitude, (policy.act_dim,), dtype=np.float32)
        self._obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:  # noqa: D102
        self._obs, info = self.env.reset(**kwargs)
        return self._obs, info

    def decode(self, obs: Any, noise: np.ndarray) -> np.ndarray:
        """Return the env action of one observation and one noise vector."""
        noise = np.asarray(noise, dtype=np.float32).reshape(-1)
        if noise.shape != (self.policy.act_dim,) or not np.all(np.isfinite(noise)):
            raise ValueError(f"the noise action must be {self.policy.act_dim} finite numbers, got {noise!r}")
        with th.no_grad():
            obs_t, _ = self.policy.obs_to_tensor(obs)
            noise_t = th.as_tensor(np.clip(noise, -self.magnitude, self.magnitude), device=self.policy.device)
            scaled = self.policy.sample_actions(self.policy.prepare_obs(obs_t), noise_t[None])
        return self.policy.unscale_action(scaled.cpu().numpy()[0])

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:  # noqa: D102
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        env_action = self.decode(self._obs, action)
        self._obs, reward, terminated, truncated, info = self.env.step(env_action)
        return self._obs, float(reward), terminated, truncated, {**info, "decoded_action": env_action}
