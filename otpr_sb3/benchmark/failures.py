"""Why a Fetch episode failed: classified from the trajectory of the object, the gripper and the goal.

Used to find what limits OTPR's success on ``FetchPickAndPlace`` (issue 26's plateau) and ``FetchPush``. A
pick-and-place episode that did not end in success is

- ``"no grasp"``: the object never rose 2 cm above where it started (a goal on the table can still be reached by
  pushing, so such an episode may also have moved the object);
- ``"dropped"``: the object rose, and at the end it is neither held nor within the success distance of the goal;
- ``"held, not placed"``: at the end the object is between the closed fingers, farther from the goal than the
  success distance (carried to the wrong place, or still on the way when the episode ran out).

A ``"no grasp"`` episode is further told apart by :func:`no_grasp_kind`: the gripper never came within 2 cm of the
object (``"never reached"``), came there but its fingers never closed near it (``"reached, fingers open"``), or
closed near it without lifting it (``"closed, missed"``).

A failed ``FetchPush`` episode (:func:`classify_push`, the first that applies) is

- ``"never moved"``: the object never moved 1 cm (in the table's plane) from where it started;
- ``"passed the goal"``: the object was within the success distance of the goal at some step, not at the end;
- ``"pushed away"``: it ends farther from the goal than it started;
- ``"stalled"``: over the last :data:`STALL_STEPS` steps neither the gripper nor the object moved 5 mm (a fixed point
  of a deterministic policy: the same observation gives the same action);
- ``"left the object"``: over those steps the object stayed within 5 mm and the gripper did not (it lost the
  object and did not push it again);
- ``"short of the goal"``: the rest: the object closer to the goal than at the start and still moving when the
  episode ran out.
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
#: The kinds of a failed push episode, in the order :func:`classify_push` tests them.
PUSH_CATEGORIES = ("never moved", "passed the goal", "pushed away", "stalled", "left the object", "short of the goal")
#: The last steps of a push episode over which "still" (within 5 mm of where it ends) is judged.
STALL_STEPS = 10


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


def classify_push(observations: list[dict[str, np.ndarray]]) -> str:
    """Classify one failed ``FetchPush`` episode into :data:`PUSH_CATEGORIES` from its observations (reset first).

    Raises
    ------
    ValueError
        If the episode ended within the success distance (it did not fail) or is shorter than
        :data:`STALL_STEPS` + 1 observations.
    """
    if len(observations) < STALL_STEPS + 1:
        raise ValueError(f"`observations` must hold an episode (>= {STALL_STEPS + 1} observations), got {len(observations)}")
    obj = np.array([o["achieved_goal"] for o in observations])
    goal = observations[-1]["desired_goal"]
    to_goal = np.linalg.norm(obj - goal, axis=1)
    if to_goal[-1] < SUCCESS_DISTANCE:
        raise ValueError("the episode ended within the success distance: it did not fail")
    if np.linalg.norm(obj[:, :2] - obj[0, :2], axis=1).max() < 0.01:
        return "never moved"
    if (to_goal < SUCCESS_DISTANCE).any():
        return "passed the goal"
    if to_goal[-1] > to_goal[0]:
        return "pushed away"
    grip = np.array([o["observation"][0:3] for o in observations])
    tail = slice(-STALL_STEPS - 1, None)
    grip_still, obj_still = (bool(np.linalg.norm(x[tail] - x[-1], axis=1).max() < 0.005) for x in (grip, obj))
    if obj_still:
        return "stalled" if grip_still else "left the object"
    return "short of the goal"


def failure_counts(model: Any, env: Any, episodes: int, seed: int, task: str = "pick_and_place") -> dict[str, Any]:
    """Run ``episodes`` episodes of ``model.predict(obs, deterministic=True)`` (reset with ``seed + k``); count kinds.

    A model whose ``predict`` samples anyway (the plateau study's ``sampled`` way of acting) is counted the same way.

    For ``task="pick_and_place"`` the counts of :data:`CATEGORIES` add up with the successes to ``episodes``, and those
    of :data:`NO_GRASP_KINDS` split the ``"no grasp"`` count; for ``task="push"``, those of :data:`PUSH_CATEGORIES`.
    """
    if task not in ("pick_and_place", "push"):
        raise ValueError(f"`task` must be 'pick_and_place' or 'push', got {task!r}")
    counts: Counter[str] = Counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        trajectory, done, info = [obs], False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            trajectory.append(obs)
            done = terminated or truncated
        if info.get("is_success"):
            counts["success"] += 1
        elif task == "push":
            counts[classify_push(trajectory)] += 1
        else:
            kind = classify(trajectory)
            counts[kind] += 1
            if kind == "no grasp":
                counts[no_grasp_kind(trajectory)] += 1
    names = PUSH_CATEGORIES if task == "push" else CATEGORIES + NO_GRASP_KINDS
    return {"episodes": episodes, "success": counts["success"] / episodes, **{k: counts[k] for k in names}}
