"""How many approach modes a policy keeps on a multimodal pick-and-place dataset (regime (d) of docs/claims.rst).

The two expert variants (:data:`otpr_sb3.benchmark.experts.EXPERT_VARIANTS`) approach the object on curves bending
to opposite sides, so at the start of an episode their horizontal actions differ in the sign of the component
perpendicular to the direction of the object. A policy that kept both modes samples both signs there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

from otpr_sb3.benchmark.tasks import get_task


def lateral_side(observation: np.ndarray, actions: np.ndarray, min_distance: float = 0.02) -> np.ndarray:
    """Return the side of each action: ``+1`` (left of the direction of the object), ``-1`` (right) or 0.

    Parameters
    ----------
    observation : array of shape (obs_dim,)
        A Fetch observation vector (gripper position at 0:3, object at 3:6).
    actions : array of shape (k, 4)
        Actions at that observation.
    min_distance : float
        Within this horizontal distance of the object there is no approach direction: every side is 0.
    """
    rel = observation[3:5] - observation[0:2]
    if np.linalg.norm(rel) <= min_distance:
        return np.zeros(len(actions), dtype=int)
    perp = np.array([-rel[1], rel[0]])
    return np.sign(np.asarray(actions)[:, :2] @ perp).astype(int)


def mode_shares(sides: np.ndarray, min_share: float = 0.1) -> dict[str, Any]:
    """Shares of left and right among the sides, and the number of modes kept (sides with ``min_share`` or more)."""
    sides = np.asarray(sides)
    if sides.size == 0:
        raise ValueError("`sides` is empty")
    left, right = float(np.mean(sides > 0)), float(np.mean(sides < 0))
    return {"left": left, "right": right, "modes": int(left >= min_share) + int(right >= min_share)}


@th.no_grad()
def actor_mode_shares(
    model: Any, env_id: str = "FetchPickAndPlace-v4", n_states: int = 20, n_samples: int = 32, seed: int = 0
) -> dict[str, Any]:
    """Sample an OTPR actor at the first observation of ``n_states`` episodes and count the approach modes it keeps.

    The samples are the actor's own (fresh initial noise through the DDIM chain), not the candidates H or Q selects:
    the question is what the diffusion model still represents.
    """
    env = get_task(env_id).make_env()
    gen = th.Generator().manual_seed(seed)
    sides = []
    for k in range(n_states):
        obs, _ = env.reset(seed=seed + k)
        obs_t, _ = model.policy.obs_to_tensor({key: np.repeat(value[None], n_samples, 0) for key, value in obs.items()})
        noise = th.randn(n_samples, model.action_space.shape[0], generator=gen).to(model.device)
        scaled = model.policy.sample_actions(model.policy.prepare_obs(obs_t), noise)
        sides.append(lateral_side(obs["observation"], model.policy.unscale_action(scaled.cpu().numpy())))
    env.close()
    return mode_shares(np.concatenate(sides))
