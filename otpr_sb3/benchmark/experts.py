"""Scripted experts of the benchmark tasks: Fetch pick-and-place and push, PointMaze, Meta-World's own, robosuite's.

Each expert maps one (dict) observation to one action in the env's action space, ``[-1, 1]``. The Fetch
experts are plain functions of the observation; the maze expert needs the maze, so :func:`expert_for` builds
it from the env.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from otpr_sb3.benchmark.metaworld_envs import metaworld_expert
from otpr_sb3.benchmark.robosuite_envs import RobosuiteExpert

Expert = Callable[[dict[str, np.ndarray]], np.ndarray]


def pick_and_place_action(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Move above the object, descend while centring, close the gripper, carry the object to the goal.

    Thresholds are loose enough that Gaussian action noise (std 0.3, i.e. 1.5 cm per step) does not make
    the phases flicker.
    """
    o = obs["observation"]
    grip, obj, goal = o[0:3], o[3:6], obs["desired_goal"]
    rel = obj - grip
    width = o[9] + o[10]
    action = np.zeros(4)
    if np.linalg.norm(rel) < 0.03 and width < 0.07:  # holding the object
        action[:3] = 10.0 * (goal - obj)
        action[3] = -1.0
    elif np.linalg.norm(rel[:2]) > 0.02:  # move above the object
        action[:3] = 10.0 * (rel + np.array([0.0, 0.0, 0.05]))
        action[3] = 1.0
    elif np.linalg.norm(rel) > 0.012:  # descend, keep centring
        action[:3] = 10.0 * rel
        action[3] = 1.0
    else:  # close
        action[:3] = 10.0 * rel
        action[3] = -1.0
    return np.clip(action, -1.0, 1.0)


def _from_side(side: float) -> Expert:
    """Return the pick-and-place expert approaching on a curve that bends to one side (``+1`` left, ``-1`` right).

    Until it holds the object, the horizontal action gains a component perpendicular to the direction of the object
    (turned counter-clockwise for ``+1``) as large as the direct one, so the gripper comes in at about 45 degrees from
    that side. Both variants succeed as often as the plain expert (all 30 noiseless episodes; 0.6-0.73 at noise 0.3
    against 0.7), and at the start their actions differ in the sign of that component: two modes of one state.
    """

    def expert(obs: dict[str, np.ndarray]) -> np.ndarray:
        action = pick_and_place_action(obs)
        o = obs["observation"]
        rel = o[3:5] - o[0:2]
        holding = np.linalg.norm(o[3:6] - o[0:3]) < 0.03 and o[9] + o[10] < 0.07
        if np.linalg.norm(rel) > 0.02 and not holding:
            action[:2] = np.clip(action[:2] + side * 10.0 * np.array([-rel[1], rel[0]]), -1.0, 1.0)
        return action

    expert.__name__ = f"pick_and_place_from_{'left' if side > 0 else 'right'}"
    return expert


def push_action(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Come down behind the object on the goal's far side, then push it along the line to the goal.

    The gripper stays closed (a flat pusher). Phases switch on loose thresholds (2-3 cm) so that action noise
    does not make them flicker; off the pushing line the gripper lifts before it moves, so it does not knock the
    object sideways.
    """
    o = obs["observation"]
    grip, obj, goal = o[0:3], o[3:6], obs["desired_goal"]
    line = goal[:2] - obj[:2]
    dist = float(np.linalg.norm(line))
    u = line / dist if dist > 1e-6 else np.array([1.0, 0.0])
    behind = obj[:2] - 0.05 * u  # where the pusher starts
    rel = grip[:2] - obj[:2]
    along = float(rel @ u)  # negative: behind the object
    lateral = float(np.linalg.norm(rel - along * u))
    action = np.zeros(4)
    action[3] = -1.0
    low = obj[2]
    if along < -0.02 and lateral < 0.02 and abs(grip[2] - low) < 0.02:  # on the line, behind: push
        # Move by the object's remaining offset (slowing near the goal, so the block does not slide past),
        # corrected back onto the line.
        push = 6.0 * line - 5.0 * (rel - along * u)
        action[:2] = np.clip(push, -0.6, 0.6)
        action[2] = 10.0 * (low - grip[2])
        return np.clip(action, -1.0, 1.0)
    if np.linalg.norm(grip[:2] - behind) < 0.02:  # above the start: come down
        target = np.array([*behind, low])
    else:  # lift, then move above the start point
        high = low + 0.08
        target = np.array([*behind, high]) if grip[2] > low + 0.05 else np.array([*grip[:2], high])
    action[:3] = 10.0 * (target - grip)
    return np.clip(action, -1.0, 1.0)


class MazeExpert:
    """Waypoint follower for PointMaze: breadth-first path over the maze cells, then a PD controller.

    The next waypoint is the centre of the next cell on the shortest cell path to the goal's cell (the goal
    itself once in that cell); the force is ``kp (waypoint - x) - kd v``, clipped to the action box.

    Parameters
    ----------
    maze : gymnasium_robotics Maze
        The env's ``unwrapped.maze`` (map and cell <-> xy conversion).
    kp, kd : float
        Gains on the position error and on the velocity.
    """

    def __init__(self, maze: Any, kp: float = 10.0, kd: float = 1.0) -> None:
        self.maze, self.kp, self.kd = maze, kp, kd
        self.free = np.asarray(maze.maze_map) != 1

    def _next_cell(self, start: tuple[int, int], goal: tuple[int, int]) -> tuple[int, int]:
        parent: dict[tuple[int, int], tuple[int, int] | None] = {goal: None}
        queue = deque([goal])
        while queue:  # search from the goal, so the parent of a cell is its next step towards the goal
            cell = queue.popleft()
            if cell == start:
                break
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nxt = (cell[0] + dr, cell[1] + dc)
                if nxt not in parent and 0 <= nxt[0] < self.free.shape[0] and 0 <= nxt[1] < self.free.shape[1]:
                    if self.free[nxt]:
                        parent[nxt] = cell
                        queue.append(nxt)
        step = parent.get(start)
        return goal if step is None else step

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Return the action for one observation."""
        pos, vel, goal = obs["observation"][:2], obs["observation"][2:4], obs["desired_goal"]
        start = tuple(int(i) for i in self.maze.cell_xy_to_rowcol(pos))
        goal_cell = tuple(int(i) for i in self.maze.cell_xy_to_rowcol(goal))
        if start == goal_cell:
            target = goal
        else:
            target = self.maze.cell_rowcol_to_xy(np.array(self._next_cell(start, goal_cell)))  # type: ignore[arg-type]
        return np.clip(self.kp * (target - pos) - self.kd * vel, -1.0, 1.0)


_FETCH_EXPERTS: dict[str, Expert] = {"FetchPickAndPlace": pick_and_place_action, "FetchPush": push_action}
#: Named variants of a task's expert, for multimodal datasets (regime (d) of docs/claims.rst).
EXPERT_VARIANTS: dict[str, dict[str, Expert]] = {"FetchPickAndPlace": {"left": _from_side(1.0), "right": _from_side(-1.0)}}


def expert_for(env: gym.Env | str, variant: str | None = None) -> Expert:
    """Return the scripted expert of a task: a Fetch task id (``"FetchPush-v4"``) or an env (needed for PointMaze).

    ``variant`` names one of the task's :data:`EXPERT_VARIANTS` (``"left"`` or ``"right"`` for pick-and-place).

    Raises
    ------
    ValueError
        If the task has no scripted expert, or no such variant.
    """
    env_id = env if isinstance(env, str) else (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
    name = env_id.split("-")[0]
    if variant is not None:
        variants = EXPERT_VARIANTS.get(name, {})
        if variant not in variants:
            raise ValueError(f"`variant` {variant!r} is not an expert variant of {env_id}; available: {sorted(variants)}")
        return variants[variant]
    if name in _FETCH_EXPERTS:
        return _FETCH_EXPERTS[name]
    if name.startswith("MetaWorld"):
        if isinstance(env, str):
            raise ValueError(f"the Meta-World expert of {env_id} needs the env (for its task), not its id")
        return metaworld_expert(env)
    if name.startswith("Robosuite"):
        if isinstance(env, str):
            raise ValueError(f"the robosuite expert of {env_id} reads the simulator: it needs the env, not its id")
        return RobosuiteExpert(env)
    if name.startswith("PointMaze"):
        if isinstance(env, str):
            raise ValueError(f"the maze expert of {env_id} needs the env (for its maze), not its id")
        return MazeExpert(env.unwrapped.maze)  # type: ignore[attr-defined]
    raise ValueError(
        f"no scripted expert for {env_id}; available: {sorted(_FETCH_EXPERTS)}, PointMaze_*, MetaWorld* and Robosuite*"
    )


def run_expert(
    env: gym.Env,
    expert: Expert,
    episodes: int,
    noise: float,
    seed: int,
    success_key: str = "is_success",
    noise_dims: tuple[int, ...] | None = None,
) -> float:
    """Roll out the expert with Gaussian action noise of std ``noise``; returns its success rate.

    Episode ``k`` is reset with seed ``seed + k``; success is ``info[success_key]`` at the episode's last step.
    ``noise_dims`` limits the noise to those action dimensions (all if ``None``); the same normal draws are made
    either way, so the noise of the other dimensions does not depend on it.
    """
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
    scale = np.full(low.shape, float(noise))
    if noise_dims is not None:
        if not all(0 <= d < low.size for d in noise_dims):
            raise ValueError(f"`noise_dims` must index the {low.size} action dimensions, got {noise_dims}")
        scale = np.zeros(low.shape)
        scale[list(noise_dims)] = noise
    successes = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, info = False, dict[str, Any]()
        while not done:
            action = expert(obs) + scale * rng.normal(size=low.shape)
            obs, _, terminated, truncated, info = env.step(np.clip(action, low, high).astype(np.float32))
            done = terminated or truncated
        successes += int(bool(info.get(success_key, False)))
    return successes / episodes
