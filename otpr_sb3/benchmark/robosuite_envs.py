"""Robomimic's tasks through robosuite: gymnasium envs with Robomimic's low-dimensional observations.

robosuite (the simulator under Robomimic's Lift, Can and Square) runs on mujoco 3.3.0 (Fetch's results use 3.11.0),
so it lives in an environment of its own (``bash scripts/run.sh robosuite``, see ``docs/benchmarks_howto.rst``); this module
imports it only when an env is made. Each env follows the harness's Fetch conventions:

- **Observation**: Robomimic's ``low_dim`` keys, flattened in this order: the object state (``object-state``),
  ``robot0_eef_pos``, ``robot0_eef_quat``, ``robot0_gripper_qpos`` (19 dimensions for Lift, 23 for Can and Square).
- **Action**: robosuite's default Panda controller (operational space, position and orientation deltas) and the
  gripper, 7 dimensions in ``[-1, 1]``; 20 control steps per second.
- **Reset**: ``reset(seed=k)`` reseeds the object placement, so an evaluation seed names one placement. What robosuite
  draws when the env is built (Lift's cube size) comes from :data:`CONSTRUCTION_SEED`, so every process (recording,
  behaviour cloning, each run, each evaluation) has the same cube; unseeded, each process drew its own and the same
  checkpoint scored differently in two processes.
- **Reward and success**: the task's own success check (``_check_success``); reward 0 on the step that reaches
  it and -1 before, and the episode ends there, so success at any step and at the last step coincide.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: Registered id -> (robosuite environment, episode cap in control steps).
ROBOSUITE_IDS: dict[str, tuple[str, int]] = {
    "RobosuiteLift-v2": ("Lift", 150),
    "RobosuitePickPlaceCan-v1": ("PickPlaceCan", 300),
    "RobosuiteNutAssemblySquare-v1": ("NutAssemblySquare", 300),
}

#: Seed of robosuite's generator when an env is built (Lift's cube size is drawn then, and kept: ``hard_reset=False``).
CONSTRUCTION_SEED = 0

LOW_DIM_KEYS = ("object-state", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")


def _import_robosuite() -> Any:
    try:
        import robosuite
    except ImportError as err:  # tests/test_robosuite.py checks this message where robosuite is absent
        raise ImportError(
            "the robosuite tasks need robosuite in its own environment: `bash scripts/run.sh robosuite` makes "
            ".venv-robosuite (mujoco 3.3.0; Fetch's results use 3.11.0)"
        ) from err
    return robosuite


class RobosuiteTask(gym.Env):
    """A robosuite manipulation task as a gymnasium env (see the module docstring).

    Parameters
    ----------
    task : str
        A robosuite environment, ``"Lift"`` or ``"PickPlaceCan"``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: str) -> None:
        robosuite = _import_robosuite()
        if task not in {name for name, _ in ROBOSUITE_IDS.values()}:
            raise ValueError(f"`task` must be one of {sorted(n for n, _ in ROBOSUITE_IDS.values())}, got {task!r}")
        self.task = task
        self.sim_env = robosuite.make(
            task,
            robots="Panda",
            has_renderer=False,
            has_offscreen_renderer=False,
            use_camera_obs=False,
            use_object_obs=True,
            reward_shaping=False,
            control_freq=20,
            horizon=10_000,  # the TimeLimit of make_robosuite_env truncates; robosuite's own horizon never does
            ignore_done=True,
            hard_reset=False,
            seed=CONSTRUCTION_SEED,
        )
        low, high = self.sim_env.action_spec
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        obs = self._flat(self.sim_env.reset())
        self.observation_space = spaces.Box(-np.inf, np.inf, obs.shape, dtype=np.float64)

    @staticmethod
    def _flat(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in LOW_DIM_KEYS])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:  # noqa: D102
        super().reset(seed=seed)
        if seed is not None:  # the placement sampler shares this generator: reseed it in place
            self.sim_env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.last_obs = self.sim_env.reset()
        return self._flat(self.last_obs), {"success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:  # noqa: D102
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"`action` must have shape {self.action_space.shape}, got {action.shape}")
        self.last_obs, _, _, _ = self.sim_env.step(np.clip(action, -1.0, 1.0))
        success = bool(self.sim_env._check_success())
        return self._flat(self.last_obs), float(success) - 1.0, success, False, {"success": success}


def make_robosuite_env(task: str, max_episode_steps: int) -> gym.Env:
    """Make a robosuite task as a benchmark env, truncated at ``max_episode_steps`` control steps."""
    if max_episode_steps < 1:
        raise ValueError(f"`max_episode_steps` must be >= 1, got {max_episode_steps}")
    return gym.wrappers.TimeLimit(RobosuiteTask(task), max_episode_steps)


def _half_turn(angle: float | np.ndarray) -> Any:
    """``angle`` wrapped to ``[-pi/2, pi/2)``: a parallel gripper is the same after half a turn."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


def _quarter_turn(angle: float | np.ndarray) -> Any:
    """``angle`` wrapped to ``[-pi/4, pi/4)``: a square is the same after a quarter turn."""
    return (angle + np.pi / 4) % (np.pi / 2) - np.pi / 4


def _fingers_moving(raw: dict[str, np.ndarray]) -> bool:
    """Whether the gripper's fingers are still moving (a grasp is not settled until they stop)."""
    return float(np.abs(raw["robot0_gripper_qvel"]).max()) > 0.01


def _axis(quat_xyzw: np.ndarray, k: int) -> np.ndarray:
    """Column ``k`` of the rotation matrix of a unit quaternion in robosuite's ``(x, y, z, w)`` order."""
    x, y, z, w = quat_xyzw
    matrix = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    return matrix[:, k]


class RobosuiteExpert:
    """Scripted manipulation for robosuite's Lift, PickPlaceCan and NutAssemblySquare, a function of the env's state.

    Lift and Can: above the object, down to it with the gripper open, close, then lift (Lift) or carry it above the
    target bin and open (Can), orientation held (zero rotation deltas). Square: the fingers turned across the nut's
    handle on the way above it, down, close, up above the peg, the nut turned square to the peg while it is carried
    over it, lowered onto the peg's top and let go (it drops around the peg), then up. Phases switch on loose
    thresholds, so Gaussian action noise does not make them flicker.

    Parameters
    ----------
    env : gymnasium.Env
        A :class:`RobosuiteTask` (possibly wrapped). The expert reads the object, the end effector and, for Can,
        the target bin from the simulator, so it acts on the env's current state, not on an observation passed in.
    gain : float
        Proportional gain from position error (m) to the action.
    """

    def __init__(self, env: gym.Env, gain: float = 10.0) -> None:
        task = env.unwrapped
        if not isinstance(task, RobosuiteTask):
            raise ValueError(f"{type(task).__name__} is not a robosuite task env")
        self.task, self.gain = task, gain
        self.__name__ = f"robosuite_{task.task.lower()}_expert"

    def _target_bin(self) -> np.ndarray:
        sim_env = self.task.sim_env
        return np.asarray(sim_env.target_bin_placements[sim_env.object_id], dtype=np.float64)

    def __call__(self, obs: Any) -> np.ndarray:
        """Return the action for the env's current state (``obs`` is the env's last observation)."""
        if self.task.task == "NutAssemblySquare":
            return self._square()
        raw = self.task.last_obs
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        name = "cube" if self.task.task == "Lift" else "Can"
        obj = np.asarray(raw[f"{name}_pos"], dtype=np.float64)
        width = float(raw["robot0_gripper_qpos"][0] - raw["robot0_gripper_qpos"][1])
        rel = obj - eef
        action = np.zeros(7)
        # Finger gap once closed on the object, and how close above it to start closing: cube / can.
        closed, xy_tol, z_tol = (0.07, 0.01, 0.008) if self.task.task == "Lift" else (0.062, 0.015, 0.015)
        held = np.linalg.norm(rel) < 0.02 and width < closed
        # Lift: the cube is narrower than the can, and lifting while the fingers still close let it slip out of a
        # grasp near its top face (seed 17); wait until they stop.
        settling = self.task.task == "Lift" and _fingers_moving(raw)
        if held and settling:
            action[6] = 1.0
        elif held and self.task.task == "Lift":
            action[2], action[6] = 0.5, 1.0
        elif held:
            target = self._target_bin()
            # Carried high enough to clear the wall between the bins (at lower heights the can hits it and drops),
            # and not at full speed (a can swung at the clip limit slips out of the fingers).
            above = np.array([target[0], target[1], max(obj[2], target[2] + 0.2)])
            if np.linalg.norm(above[:2] - obj[:2]) < 0.02:
                action[6] = -1.0  # over the bin: let go
            else:
                if obj[2] > target[2] + 0.15:
                    action[:3] = np.clip(self.gain * (above - obj), -0.6, 0.6)
                else:
                    action[2] = 1.0
                action[6] = 1.0
        else:  # (the fingers stop about 1 cm above the can's centre: its z_tol)
            return self._reach(action, rel, bool(np.linalg.norm(rel[:2]) > xy_tol), 0.08, z_tol)
        return np.clip(action, -1.0, 1.0)

    def _reach(self, action: np.ndarray, rel: np.ndarray, far: bool, height: float, z_tol: float) -> np.ndarray:
        """To a grasp at ``rel`` from the end effector: above it while ``far``, then down open, then close on it."""
        if far:
            action[:3] = self.gain * (rel + np.array([0.0, 0.0, height]))
            action[6] = -1.0
        elif rel[2] < -z_tol:
            action[:3] = self.gain * rel
            action[6] = -1.0
        else:
            action[:3] = self.gain * rel
            action[6] = 1.0
        return np.clip(action, -1.0, 1.0)

    def _square(self) -> np.ndarray:
        raw, sim_env = self.task.last_obs, self.task.sim_env
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        nut = np.asarray(raw["SquareNut_pos"], dtype=np.float64)
        handle = np.asarray(sim_env.sim.data.site_xpos[self._handle_site()], dtype=np.float64)
        peg = np.asarray(sim_env.sim.data.body_xpos[sim_env.peg1_body_id], dtype=np.float64)  # the square nut's peg
        width = float(raw["robot0_gripper_qpos"][0] - raw["robot0_gripper_qpos"][1])
        fingers = _axis(np.asarray(raw["robot0_eef_quat"], dtype=np.float64), 1)  # the axis the fingers close along
        along = _axis(np.asarray(raw["SquareNut_quat"], dtype=np.float64), 0)  # from the nut's centre to its handle
        action = np.zeros(7)
        off_peg = float(np.linalg.norm(nut[:2] - peg[:2]))
        if off_peg < 0.02 and nut[2] < sim_env.table_offset[2] + 0.05:  # around the peg: let go, move away
            action[2], action[6] = 1.0, -1.0
            return action
        rel = handle - eef
        if np.linalg.norm(rel) < 0.02 and width < 0.045:  # the handle is between the fingers
            action[6] = 1.0
            if _fingers_moving(raw):  # lifting while the fingers still close lets the handle slip (as for Lift)
                return action
            square = _quarter_turn(-np.arctan2(along[1], along[0]))  # the nut's sides parallel to the peg's
            action[5] = 3.0 * square
            if nut[2] < sim_env.table_offset[2] + 0.17 and off_peg > 0.01:  # above the peg's top first
                action[2] = 1.0
            elif off_peg > 0.005 or abs(square) > 0.05:  # the nut's centre over the peg, the nut turned square
                action[:2] = np.clip(self.gain * (peg[:2] - nut[:2]), -0.6, 0.6)
            elif nut[2] < peg[2] + 0.055:  # on the peg's top (held by its handle the nut tilts and would jam)
                action[6] = -1.0
            else:
                action[2] = -0.5
            return np.clip(action, -1.0, 1.0)
        # Fingers across the handle: the closing axis perpendicular to the handle, half a turn either way.
        action[5] = 3.0 * _half_turn(np.arctan2(along[0], -along[1]) - np.arctan2(fingers[1], fingers[0]))
        far = bool(np.linalg.norm(rel[:2]) > 0.01 or abs(action[5]) > 0.15)  # not above the handle, or not turned
        return self._reach(action, rel, far, 0.06, 0.01)

    def _handle_site(self) -> int:
        sim_env = self.task.sim_env
        return int(sim_env.sim.model.site_name2id(sim_env.nuts[0].important_sites["handle"]))


def register_robosuite_envs() -> None:
    """Register :data:`ROBOSUITE_IDS` with gymnasium (idempotent; robosuite is imported only by ``gym.make``)."""
    for env_id, (task, cap) in ROBOSUITE_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point="otpr_sb3.benchmark.robosuite_envs:make_robosuite_env",
                kwargs={"task": task, "max_episode_steps": cap},
            )
