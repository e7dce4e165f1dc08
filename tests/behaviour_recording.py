"""Fixed-seed short runs of every OTPR method, recorded to check that a refactor preserves behaviour.

``tests/data/behaviour_recording.json`` was written by ``python tests/behaviour_recording.py`` at commit 25a757c, the
code before the architecture refactor (its ``commit`` field); the test ``test_behaviour_preserved.py`` reruns every
configuration on the current code and compares. Re-recording on later code would make the test compare the code with
itself, so the script refuses to overwrite the recording unless given ``--overwrite``. Each run records every value
logged under ``train/`` and ``rollout/`` (losses, dual objective and diagnostics, H statistics), the
deterministic actions on a grid of observations after training, and the sum of the policy's parameters.
The runs use one torch thread and float32 critics on pairs, so that they do not depend on the CPU's bfloat16
support.

Re-recorded on purpose (``--only NAME``; the commit is in the file's ``rerecorded`` field): ``otpr-exact-diagnostics``,
after the exact L2 solver's cold start changed (the all-active optimum where most pairs are active, issue 27). That
configuration fits the potentials to exact minibatch solves, whose potentials are not unique where the plan's support
is disconnected: the optimal values stayed within 2e-7 relative, the potentials moved, and with them the dual's
objective (up to 0.5%) and the held-out diagnostics (up to 1.5%). ``otpr-candidates-finetune``, ``from-scratch`` and
``from-scratch-reference``, after candidate actor targets began to wait for the guidance to be ready (replay targets
in the warm-up before, as every other setting; issue 25, docs/claims.rst "Second wave: tuning").
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.logger import Logger

sys.path.insert(0, os.path.dirname(__file__))
from otpr_helpers import FAST, SMALL, IdentityEnvBox, PointGoalEnv, identity_demos, point_goal_demos  # noqa: E402

from otpr_sb3 import OTPR  # noqa: E402

PATH = os.path.join(os.path.dirname(__file__), "data", "behaviour_recording.json")
_POLICY = dict(SMALL, pair_precision="float32")

#: name -> (OTPR keyword arguments, policy keyword arguments, pretrained, dict observations, learn steps)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any], bool, bool, int]] = {
    "otpr": ({}, {}, True, False, 160),
    "otpr-u": ({"use_mask": False}, {}, True, False, 160),
    "otpr-q": ({}, {"guidance": "q"}, True, False, 160),
    "otpr-adv": ({}, {"guidance": "advantage"}, True, False, 160),
    "idql": ({}, {"guidance": "expectile"}, True, False, 160),
    "dql": ({}, {"guidance": "dql"}, True, False, 160),
    "otpr-exact-diagnostics": (
        {"dual_kwargs": {"method": "exact", "eval_freq": 20, "eval_batch_size": 24}},
        {},
        True,
        False,
        120,
    ),
    "otpr-candidates-finetune": (
        {"actor_targets": "candidates", "actor_kwargs": {"candidate_batch_size": 8}},
        {},
        True,
        False,
        120,
    ),
    "from-scratch": ({"actor_kwargs": {"candidate_batch_size": 8}}, {}, False, False, 200),
    "from-scratch-reference": (
        {"dual_kwargs": {"reference_actions": 12}, "actor_kwargs": {"candidate_batch_size": 8}},
        {},
        False,
        False,
        150,
    ),
    "dict-obs": ({}, {}, True, True, 120),
}


class _Recorder(Logger):
    def __init__(self) -> None:
        super().__init__(folder=None, output_formats=[])
        self.history: list[tuple[str, float]] = []

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        if key.startswith(("train/", "rollout/")) and isinstance(value, int | float | np.floating | np.integer):
            self.history.append((key, float(value)))
        super().record(key, value, exclude)


@contextlib.contextmanager
def _potentials_for_every_guidance(drawn: list[Any]) -> Iterator[None]:
    """Draw the initial weights of two (16,) potentials before a guidance without potentials is built.

    The recording was made when the policy built the potentials u and v for every guidance; now only the H guidance
    has them. Drawing the same random numbers keeps the global stream, hence every later draw, where it was, so the
    runs of the other guidances compare exactly. The potentials are appended to ``drawn``: they were never trained,
    and the recorded parameter sums include them.
    """
    import otpr_sb3.policies as policies
    from neural_ot import MLPPotential

    make = policies.make_guidance

    def make_after_potentials(name: str, obs_dim: int, act_dim: int, policy: Any, **kwargs: Any) -> Any:
        if name != "compatibility":
            drawn.extend([MLPPotential(obs_dim, (16,)), MLPPotential(act_dim, (16,))])
        return make(name, obs_dim, act_dim, policy, **kwargs)

    policies.make_guidance = make_after_potentials
    try:
        yield
    finally:
        policies.make_guidance = make


def run_config(name: str) -> dict[str, Any]:
    """Run one configuration of :data:`CONFIGS` and return what it recorded."""
    kwargs, policy_kwargs, pretrained, dict_obs, steps = CONFIGS[name]
    if policy_kwargs.get("guidance", "compatibility") == "compatibility":
        policy_kwargs = {**policy_kwargs, "guidance_kwargs": {"potential_hidden": (16,)}}
    th.set_num_threads(1)
    env = PointGoalEnv() if dict_obs else IdentityEnvBox(ep_length=20)
    fast = {k: v for k, v in FAST.items() if k != "policy_kwargs"}
    for group in ("dual_kwargs", "actor_kwargs"):
        kwargs = {**kwargs, group: {**fast.pop(group), **kwargs.get(group, {})}}
    policy = "MultiInputPolicy" if dict_obs else "MlpPolicy"
    untrained_potentials: list[Any] = []
    with _potentials_for_every_guidance(untrained_potentials):
        model = OTPR(policy, env, seed=7, **fast, **kwargs, policy_kwargs=dict(_POLICY, **policy_kwargs))
    if pretrained:
        model.pretrain(point_goal_demos(5) if dict_obs else identity_demos(), n_steps=60)
    recorder = _Recorder()
    model.set_logger(recorder)
    model.learn(steps, log_interval=1)
    if dict_obs:
        grid = np.linspace(-1, 1, 5, dtype=np.float32)[:, None].repeat(2, 1)
        obs: Any = {"observation": grid, "achieved_goal": grid, "desired_goal": grid[::-1].copy()}
    else:
        obs = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    actions, _ = model.predict(obs, deterministic=True)
    modules = [model.policy, *untrained_potentials]
    params = [p.detach().double() for m in modules for p in m.parameters()]
    return {
        "log": recorder.history,
        "actions": actions.ravel().tolist(),
        "parameter_sum": float(sum(p.sum() for p in params)),
        "parameter_abs_sum": float(sum(p.abs().sum() for p in params)),
    }


def main() -> None:
    """Record every configuration into :data:`PATH` (``--overwrite`` to replace an existing recording)."""
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    args = sys.argv[1:]
    if "--only" in args:  # re-record one configuration whose behaviour changed on purpose; its commit is kept
        name = args[args.index("--only") + 1]
        with open(PATH) as f:
            data = json.load(f)
        data["runs"][name] = run_config(name)
        data.setdefault("rerecorded", {})[name] = commit
    elif os.path.exists(PATH) and "--overwrite" not in args:
        raise SystemExit(f"{PATH} exists (recorded at the commit in its `commit` field); pass --overwrite to replace it")
    else:
        cpu = platform.processor() or platform.machine()
        data = {"commit": commit, "cpu": cpu, "runs": {n: run_config(n) for n in CONFIGS}}
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(PATH, "w") as f:
        json.dump(data, f, indent=0)


if __name__ == "__main__":
    main()
