"""Why a pick-and-place episode failed: classified from the trajectory of the object, the gripper and the goal.

Used to find what limits OTPR's success on ``FetchPickAndPlace`` (issue 26's plateau): an episode that did not end
in success is

- ``"no grasp"``: the object never rose 2 cm above where it started (a goal on the table can still be reached by
  pushing, so such an episode may also have moved the object);
- ``"dropped"``: the object rose, and at the end it is neither held nor within the success distance of the goal;
- ``"held, not placed"``: at the end the object is between the closed fingers, farther from the goal than the
  success distance (carried to the wrong place, or still on the way when the episode ran out).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

#: Fetch's success distance between the object and the goal (m).
SUCCESS_DISTANCE = 0.05
CATEGORIES = ("no grasp", "dropped", "held, not placed")


def held(observation: np.ndarray) -> bool:
    """Whether a Fetch observation has the object between the gripper's closed fingers."""
    grip, obj = observation[0:3], observation[3:6]
    return bool(np.linalg.norm(obj - grip) < 0.03 and observation[9] + observation[10] < 0.07)


def classify(observations: list[dict[str, np.ndarray]]) -> str:
    """Classify one failed episode from its observations (the reset one first, the last step's last).

    Raises
    ------
    ValueError
        If the episode ended within the success distance (it did not fail) or has fewer than two observations.
    """
    if len(observations) < 2:
        raise ValueError(f"`observations` must hold an episode (>= 2 observations), got {len(observations)}")
    last = observations[-1]
    if np.linalg.norm(last["achieved_goal"] - last["desired_goal"]) < SUCCESS_DISTANCE:
        raise ValueError("the episode ended within the success distance: it did not fail")
    z0 = observations[0]["observation"][5]
    rose = max(o["observation"][5] for o in observations) - z0 >= 0.02
    if not rose:
        return "no grasp"
    return "held, not placed" if held(last["observation"]) else "dropped"


def failure_counts(model: Any, env: Any, episodes: int, seed: int) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes (reset with ``seed + k``) and count successes and failure kinds."""
    counts: Counter[str] = Counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        trajectory, done, info = [obs], False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            trajectory.append(obs)
            done = terminated or truncated
        counts["success" if info.get("is_success") else classify(trajectory)] += 1
    return {"episodes": episodes, "success": counts["success"] / episodes, **{k: counts[k] for k in CATEGORIES}}
