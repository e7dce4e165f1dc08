"""Why a pick-and-place episode failed: classified from the trajectory of the object, the gripper and the goal.

Used to find what limits OTPR's success on ``FetchPickAndPlace`` (issue 26's plateau): an episode that did not end
in success is

- ``"no grasp"``: the object never rose 2 cm above where it started (a goal on the table can still be reached by
  pushing, so such an episode may also have moved the object);
- ``"dropped"``: the object rose, and at the end it is neither held nor within the success distance of the goal;
- ``"held, not placed"``: at the end the object is between the closed fingers, farther from the goal than the
  success distance (carried to the wrong place, or still on the way when the episode ran out).

A ``"no grasp"`` episode is further told apart by :func:`no_grasp_kind`: the gripper never came within 2 cm of the
object (``"never reached"``), came there but its fingers never closed near it (``"reached, fingers open"``), or
closed near it without lifting it (``"closed, missed"``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

#: Fetch's success distance between the object and the goal (m).
SUCCESS_DISTANCE = 0.05
CATEGORIES = ("no grasp", "dropped", "held, not placed")
NO_GRASP_KINDS = ("never reached", "reached, fingers open", "closed, missed")
#: The gripper is at the object within this distance (m) of the object's centre (the cube's half-width is 2.5 cm).
REACH_DISTANCE = 0.02
#: Fingers closer than this (sum of both finger positions, m) are closed: on the 5 cm cube they stop near 0.05.
CLOSED_WIDTH = 0.07


def held(observation: np.ndarray) -> bool:
    """Whether a Fetch observation has the object between the gripper's closed fingers."""
    grip, obj = observation[0:3], observation[3:6]
    return bool(np.linalg.norm(obj - grip) < 0.03 and observation[9] + observation[10] < CLOSED_WIDTH)


def no_grasp_kind(observations: list[dict[str, np.ndarray]]) -> str:
    """Which of :data:`NO_GRASP_KINDS` a failed episode without a grasp is, from its observations.

    The reset observation comes first and is skipped (Fetch reports closed fingers there).

    Raises
    ------
    ValueError
        If the episode has fewer than two observations.
    """
    if len(observations) < 2:
        raise ValueError(f"`observations` must hold an episode (>= 2 observations), got {len(observations)}")
    o = np.array([step["observation"] for step in observations[1:]])
    distance = np.linalg.norm(o[:, 0:3] - o[:, 3:6], axis=1)
    if not (distance < REACH_DISTANCE).any():
        return "never reached"
    closed_near = (distance < 0.03) & (o[:, 9] + o[:, 10] < CLOSED_WIDTH)
    return "closed, missed" if closed_near.any() else "reached, fingers open"


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
    """Run ``episodes`` episodes of ``model.predict(obs, deterministic=True)`` (reset with ``seed + k``); count kinds.

    A model whose ``predict`` samples anyway (the plateau study's ``sampled`` way of acting) is counted the same way.

    The counts of :data:`CATEGORIES` add up with the successes to ``episodes``; those of :data:`NO_GRASP_KINDS` split
    the ``"no grasp"`` count.
    """
    counts: Counter[str] = Counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        trajectory, done, info = [obs], False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            trajectory.append(obs)
            done = terminated or truncated
        kind = "success" if info.get("is_success") else classify(trajectory)
        counts[kind] += 1
        if kind == "no grasp":
            counts[no_grasp_kind(trajectory)] += 1
    kinds = {k: counts[k] for k in CATEGORIES + NO_GRASP_KINDS}
    return {"episodes": episodes, "success": counts["success"] / episodes, **kinds}
