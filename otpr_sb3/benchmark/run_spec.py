"""What a benchmark run is: :class:`RunSpec`, its identity and directory, and the checks of its overrides.

Also the check of the spec that a run directory already holds (:func:`check_spec`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from stable_baselines3 import SAC, TD3

from otpr_sb3.arguments import ACTOR_KWARGS, DUAL_KWARGS, with_defaults
from otpr_sb3.benchmark.methods import Method, get_method
from otpr_sb3.benchmark.recording import dataset_id_for
from otpr_sb3.benchmark.tasks import get_task
from otpr_sb3.otpr import OTPR


@dataclass
class RunSpec:
    """Everything that defines a run (its directory follows from ``runs_dir``, the task, method and seed).

    Attributes
    ----------
    env_id, method : str
        A benchmark task and a method of :data:`otpr_sb3.benchmark.methods.METHODS`.
    seed : int
        Seeds the pretraining, the fine-tuning and the training env (evaluation seeds are fixed).
    steps : int
        Online env steps.
    dataset : str, optional
        Minari dataset id in ``data_path``; default: the task's chosen setting (recorded with seed 0 if missing).
    eval_freq, eval_episodes, final_eval_episodes : int
        Evaluation every ``eval_freq`` steps on ``eval_episodes`` episodes; the start and the end on
        ``final_eval_episodes``.
    pretrain_steps : int, optional
        BC steps of the shared pretrained checkpoint (default: the task's).
    buffer_size : int, optional
        Replay capacity (default: the demonstrations plus ``steps``, so nothing is dropped and checkpoints stay small).
    threads : int, optional
        Torch threads (one when two runs share two cores).
    kwargs, policy_kwargs : dict
        Overrides merged over the method's configuration (e.g. smaller networks for tests).
    """

    env_id: str
    method: str
    seed: int = 0
    steps: int = 30_000
    dataset: str | None = None
    eval_freq: int = 2_000
    eval_episodes: int = 20
    final_eval_episodes: int = 50
    pretrain_steps: int | None = None
    buffer_size: int | None = None
    runs_dir: str = "outputs/runs"
    data_path: str = "outputs/minari"
    threads: int | None = None
    device: str = "auto"
    kwargs: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_task(self.env_id)
        get_method(self.method)
        for name in ("steps", "eval_freq", "eval_episodes", "final_eval_episodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        _check_overrides(get_method(self.method), self.kwargs, self.policy_kwargs)

    @property
    def overrides(self) -> dict[str, Any]:
        """The fields that make the run differ from the method's default run on the task, where set.

        The method's configuration (overrides, BC steps, buffer size) and the demonstrations when they are not the
        task's default dataset: two runs that differ in any of them get different directories.
        """
        out = {k: getattr(self, k) for k in _OVERRIDE_FIELDS if getattr(self, k) not in (None, {})}
        if self.dataset is not None and self.dataset != default_dataset_id(self.env_id):
            out["dataset"] = self.dataset
        return out

    @property
    def run_dir(self) -> str:
        """``<runs_dir>/<task>/<method>/s<seed>``, or ``<method>-<key>`` with :attr:`overrides` (``key`` their digest).

        Two specs with different overrides (the demonstrations included) never share a directory.
        """
        name = self.method
        if self.overrides:
            name += "-" + hashlib.sha1(_canonical(self.overrides).encode()).hexdigest()[:8]
        return os.path.join(self.runs_dir, get_task(self.env_id).name, name, f"s{self.seed}")

    def identity(self) -> dict[str, Any]:
        """Return what the run is: every field but :data:`_MACHINE_FIELDS` (where and how it executes)."""
        return json.loads(_canonical({k: v for k, v in asdict(self).items() if k not in _MACHINE_FIELDS}))

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """List how a run directory's stored ``spec.json`` differs from this spec (empty: it is this run).

        The dataset is compared by id, the default resolved to the task's (the stored card is the runner's business).
        """
        requested = {**self.identity(), "dataset": self.dataset or default_dataset_id(self.env_id)}
        stored = {k: v for k, v in stored.items() if k not in (*_MACHINE_FIELDS, "provenance", "card")}
        return _differences(stored, requested)


def default_dataset_id(env_id: str) -> str:
    """Return the id of a task's default demonstrations (its chosen setting, recorded with seed 0), as the runner does."""
    task = get_task(env_id)
    return dataset_id_for(env_id, task.demo_episodes, task.demo_noise, 0)


#: RunSpec fields that say where and how a run executes, not what it is: recorded as provenance, not identity.
_MACHINE_FIELDS = ("runs_dir", "data_path", "threads", "device")


#: RunSpec fields that change the method's configuration: a run with any of them gets a directory of its own.
_OVERRIDE_FIELDS = ("kwargs", "policy_kwargs", "pretrain_steps", "buffer_size")


#: Arguments the runner sets itself: not overridable.
_RUNNER_ARGS = {"self", "policy", "env", "seed", "buffer_size", "tensorboard_log", "device", "policy_kwargs"}
_RUNNER_ARGS |= {"_init_setup_model", "action_noise", "replay_buffer_class"}  # objects, not settings


def _parameters(fn: Callable[..., Any]) -> set[str]:
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _check_overrides(method: Method, kwargs: dict[str, Any], policy_kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming any override that the method's algorithm or policy does not take."""
    if method.algo == "ibrl":
        from stable_baselines3.td3.policies import TD3Policy

        from otpr_sb3.ibrl import IBRL

        algo_params, policy_params = _parameters(IBRL.__init__) | _parameters(TD3.__init__), _parameters(TD3Policy.__init__)
        algo_params -= {"il_policy"}
    elif method.algo in ("sac", "dsrl", "rlpd"):
        from stable_baselines3.sac.policies import SACPolicy

        algo_params, policy_params = _parameters(SAC.__init__), _parameters(SACPolicy.__init__)
        if method.algo == "dsrl":
            algo_params |= {"noise_magnitude"}
        if method.algo == "rlpd":
            algo_params |= {"target_subset"}
    else:
        from otpr_sb3.policies import OTPRPolicy

        algo_params, policy_params = _parameters(OTPR.__init__), _parameters(OTPRPolicy.__init__)
    algo_params -= _RUNNER_ARGS
    policy_params -= {"self", "observation_space", "action_space", "lr_schedule"}
    for given, valid, what in ((kwargs, algo_params, "algorithm"), (policy_kwargs, policy_params, "policy")):
        unknown = sorted(set(given) - valid)
        if unknown:
            prefix = "policy." if what == "policy" else ""
            raise ValueError(
                f"unknown {what} argument(s) {[prefix + k for k in unknown]} for method {method.name!r}; "
                f"valid: {', '.join(prefix + k for k in sorted(valid))}"
            )
    if method.algo in ("otpr", "bc"):  # the keys of OTPR's dict arguments, checked as early
        for name, defaults in (("dual_kwargs", DUAL_KWARGS), ("actor_kwargs", ACTOR_KWARGS)):
            with_defaults(name, kwargs.get(name), defaults)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _differences(stored: dict[str, Any], requested: dict[str, Any], prefix: str = "") -> list[str]:
    """List the fields (dotted paths) that differ between two identities, as ``name: stored -> requested``."""
    out = []
    for key in sorted(set(stored) | set(requested)):
        a, b = stored.get(key), requested.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_spec(run_dir: str, identity: dict[str, Any]) -> bool:
    """Whether ``run_dir`` already has a ``spec.json``; raise if it describes another run than ``identity``.

    Raises
    ------
    ValueError
        Naming the fields that differ, if the stored identity is not ``identity``.
    """
    path = os.path.join(run_dir, "spec.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        stored = json.load(f)
    stored = {k: v for k, v in stored.items() if k not in (*_MACHINE_FIELDS, "provenance")}
    diffs = _differences(stored, identity)
    if diffs:
        raise ValueError(
            f"{run_dir} holds another run than the one requested ({'; '.join(diffs)}); "
            "use another `runs_dir`, or delete that directory to replace the run"
        )
    return True
