"""One benchmark run: a method on a task with one seed, resumable from its last checkpoint.

A run directory ``<runs_dir>/<task>/<method>/s<seed>/`` (``<method>-<key>`` when the spec overrides the method's
configuration or names other demonstrations than the task's default, ``key`` a digest of those) holds

- ``spec.json``: what the run is (its identity: every field of the :class:`RunSpec` but where and how it executes,
  with the dataset resolved and its card) and the provenance of the process that started it (commit, versions,
  CPU, threads, resolved settings), written once when the run starts;

- ``evaluations.csv``: one row per evaluation (timesteps, success, episodes, final, wall_time, cpu_time), appended
  as each finishes; the row at 0 timesteps is the start (the pretrained checkpoint, or an untrained SAC);
- ``checkpoint/``: the model and its replay buffer, rewritten at every evaluation;
- ``tb/``: TensorBoard logs; ``model.zip`` and ``summary.json`` once the run has finished.

An interrupted run started again with the same :class:`RunSpec` loads its checkpoint (model, replay buffer,
step count) and goes on from there; evaluations after the checkpoint are dropped and redone. A spec whose
identity differs from the one in the directory's ``spec.json`` is refused, with the differing fields named, and so
is a resume on another kind of machine or with other code or demonstrations
(:func:`~otpr_sb3.benchmark.provenance.check_resumable`), so a directory only ever holds the run its ``spec.json``
describes. The shared pretrained checkpoint a run starts from is in ``<runs_dir>/<task>/pretrained/`` with the
record of where it was made (:mod:`otpr_sb3.benchmark.pretrained`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import set_random_seed

from otpr_sb3.benchmark.demo_buffers import (
    HerDictReplayBuffer,
    HerSymmetricDictReplayBuffer,
    SymmetricDictReplayBuffer,
    SymmetricReplayBuffer,
)
from otpr_sb3.benchmark.diagnostics import read_diagnostics
from otpr_sb3.benchmark.evaluation import append_evaluation, read_evaluations, success_rate, write_evaluations
from otpr_sb3.benchmark.locks import locked
from otpr_sb3.benchmark.methods import Method, get_method
from otpr_sb3.benchmark.pretrained import pretrained_checkpoint, start_from_pretrained
from otpr_sb3.benchmark.provenance import check_resumable, provenance
from otpr_sb3.benchmark.recording import DatasetCard, load_card, record
from otpr_sb3.benchmark.run_spec import RunSpec, check_spec
from otpr_sb3.benchmark.tasks import Task, get_task
from otpr_sb3.demonstrations import Demonstrations, add_demonstrations
from otpr_sb3.ibrl import IBRL
from otpr_sb3.noise_steering import NoiseSteeringWrapper
from otpr_sb3.otpr import OTPR
from otpr_sb3.rlpd import RLPD

EvaluationHook = Callable[[dict[str, float]], None]
#: The shared pretrained checkpoint's path, of the run's architecture or (True) the default one.
Pretrained = Callable[[bool], str]


#: The file in a run directory whose lock a running process holds (not a record: ``otpr report --collect`` skips it).
RUN_LOCK = ".run.lock"


def run(spec: RunSpec, progress_bar: bool = False, on_evaluation: EvaluationHook | None = None) -> dict[str, Any]:
    """Run (or resume, or return the summary of a finished) benchmark run.

    Parameters
    ----------
    spec : RunSpec
    progress_bar : bool
        SB3's progress bar over the online steps (and tqdm over pretraining).
    on_evaluation : callable, optional
        Called with each evaluation row as it is written (the sweep reports it to Ray Tune).

    Returns
    -------
    dict
        The run's summary (also in ``summary.json``): start and final success, steps, wall-clock, env steps/s.

    Raises
    ------
    RuntimeError
        If another process is running the same run directory (two sweeps, or a sweep and ``otpr train``, asking
        for the same run): both writing its checkpoint and evaluations would corrupt its record.
    """
    path = os.path.join(spec.run_dir, RUN_LOCK)  # one process per run on this machine
    with locked(path, busy=f"{spec.run_dir} is being run by another process (it holds {path}); wait for it, or stop it"):
        return _run(spec, progress_bar, on_evaluation)


def _run(spec: RunSpec, progress_bar: bool, on_evaluation: EvaluationHook | None) -> dict[str, Any]:
    task, method = get_task(spec.env_id), get_method(spec.method)
    run_dir = spec.run_dir
    card = _dataset(spec, task)
    identity = {**spec.identity(), "dataset": card.dataset_id, "card": asdict(card)}
    started = check_spec(run_dir, identity)
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    if spec.threads:
        th.set_num_threads(int(spec.threads))
    os.makedirs(run_dir, exist_ok=True)
    demos = Demonstrations.from_minari(card.dataset_id, data_path=os.path.abspath(spec.data_path))
    _, policy_kwargs = _otpr_kwargs(spec, method)
    origin = provenance(spec.device, policy_kwargs if method.algo in ("otpr", "bc") else None, demos)
    clock = _RunClock()
    pretrained: Pretrained = functools.partial(pretrained_checkpoint, spec, task, card, demos, progress_bar, origin=origin)
    if method.pretrained:  # built, or its origin checked, before the run's record is written
        pretrained(method.algo in ("dsrl", "ibrl"))
    _record_start(run_dir, identity, origin, started)
    evals_path = os.path.join(run_dir, "evaluations.csv")
    make_env = _env_maker(spec, task, method, pretrained)
    eval_env = make_env()

    def evaluate(model: Any, timesteps: int, episodes: int, final: bool) -> dict[str, float]:
        rate = success_rate(model, task, episodes, env=eval_env)
        return {"timesteps": timesteps, "success": rate, "episodes": episodes, "final": int(final), **clock.elapsed()}

    if method.algo == "bc":
        model: BaseAlgorithm = OTPR.load(pretrained(False), device=spec.device)
        row = evaluate(model, 0, spec.final_eval_episodes, final=True)
        write_evaluations(evals_path, [row])
        if on_evaluation:
            on_evaluation(row)
        return _finish(spec, card, model, [row], 0.0, origin)

    ckpt_dir = os.path.join(run_dir, "checkpoint")
    model, resumed = _model(spec, task, method, demos, ckpt_dir, make_env, pretrained)
    rows = [r for r in read_evaluations(evals_path) if r["timesteps"] <= model.num_timesteps and not r["final"]]
    if resumed and rows:
        clock.resume(rows[-1])
    else:
        rows = [evaluate(model, 0, spec.final_eval_episodes, final=False)]
        if on_evaluation:
            on_evaluation(rows[0])
    write_evaluations(evals_path, rows)
    callback = _EvaluateAndCheckpoint(spec, ckpt_dir, evals_path, lambda m, t: evaluate(m, t, spec.eval_episodes, False))
    callback.hook = on_evaluation
    remaining = spec.steps - model.num_timesteps
    t1, start_steps = time.time(), model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=callback, reset_num_timesteps=not resumed, progress_bar=progress_bar)
    fps = (model.num_timesteps - start_steps) / max(time.time() - t1, 1e-9)
    final = evaluate(model, model.num_timesteps, spec.final_eval_episodes, final=True)
    append_evaluation(evals_path, final)
    if on_evaluation:
        on_evaluation(final)
    stochastic = _stochastic_success(spec, task, model, eval_env)
    return _finish(spec, card, model, read_evaluations(evals_path), fps, origin, stochastic)


class _RunClock:
    """Wall-clock and this process's CPU time since the run started, the time of earlier attempts included."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.time(), time.process_time()

    def resume(self, last: dict[str, float]) -> None:
        """Move the start back by the times of ``last``, the last evaluation kept from the earlier attempts."""
        self.wall -= last["wall_time"]
        # An attempt that did not record CPU time (an older commit) leaves the rest of the run without it.
        self.cpu -= last.get("cpu_time", math.nan)

    def elapsed(self) -> dict[str, float]:
        """``wall_time`` and ``cpu_time`` of an evaluation row (``cpu_time`` NaN if an attempt did not record it)."""
        return {"wall_time": time.time() - self.wall, "cpu_time": time.process_time() - self.cpu}


def _stochastic_success(spec: RunSpec, task: Task, model: BaseAlgorithm, env: Any) -> float:
    """Return the success of the final model acting as it collects, on the final evaluation's episodes, seeded.

    A second look at the final model: a deterministic policy can stall at a state its own action does not change
    (OTPR's noise-mode actor at the object, its fingers open; docs/results.rst).
    """
    set_random_seed(spec.seed)
    return success_rate(model, task, spec.final_eval_episodes, env=env, deterministic=False)


def default_dataset(env_id: str, data_path: str) -> DatasetCard:
    """Return the default demonstrations of ``env_id`` under ``data_path``, recording them first if they are missing.

    Under a file lock in ``data_path``: concurrent processes (sweep trials, two sweeps sharing a data path) wait for
    the one that records, instead of racing to create the same Minari dataset.
    """
    with locked(os.path.join(os.path.abspath(data_path), ".record.lock")):
        return record(env_id, seed=0, data_path=data_path)


def _dataset(spec: RunSpec, task: Task) -> DatasetCard:
    if spec.dataset is None:
        return default_dataset(task.env_id, spec.data_path)
    card = load_card(spec.dataset, spec.data_path)
    if card.env_id != task.env_id:
        raise ValueError(f"`dataset` {spec.dataset!r} holds {card.env_id} demonstrations, not {task.env_id}")
    return card


def _otpr_kwargs(spec: RunSpec, method: Method) -> tuple[dict[str, Any], dict[str, Any]]:
    return {**method.kwargs, **spec.kwargs}, {**method.policy_kwargs, **spec.policy_kwargs}


def _record_start(run_dir: str, identity: dict[str, Any], origin: dict[str, Any], started: bool) -> None:
    """Write a new run's ``spec.json``; check that a started one resumes with the machine kind, code and data it names."""
    if started:
        check_resumable(run_dir, origin)
        return
    # Written once: where the run and its data sit is the machine's business, not the run's.
    with open(os.path.join(run_dir, "spec.json"), "w") as f:
        json.dump({**identity, "provenance": origin}, f, indent=1)


def _buffer_size(spec: RunSpec, demos: Demonstrations) -> int:
    return int(spec.buffer_size) if spec.buffer_size else len(demos) + spec.steps + 1


def _env_maker(spec: RunSpec, task: Task, method: Method, pretrained: Pretrained) -> Callable[[], Any]:
    """How the run makes its envs: the task's, or for DSRL the task's steered by the frozen pretrained actor."""
    if method.algo != "dsrl":
        return task.make_env
    kwargs, _ = _otpr_kwargs(spec, method)
    box = {"magnitude": float(kwargs["noise_magnitude"])} if "noise_magnitude" in kwargs else {}  # else the wrapper's
    frozen = OTPR.load(pretrained(True), device=spec.device).policy
    return lambda: NoiseSteeringWrapper(task.make_env(), frozen, **box)


def fresh_model(
    spec: RunSpec, progress_bar: bool = False, check_origin: bool = True
) -> tuple[BaseAlgorithm, Callable[[], Any]]:
    """Return the model a run of ``spec`` starts from, and the maker of the run's envs, without running it.

    The dataset and the shared pretrained checkpoint are found (or built) under ``spec.data_path`` and
    ``spec.runs_dir`` as :func:`run` finds them; the run's own checkpoint is ignored. Fine-tuning the model writes
    its TensorBoard log under ``spec.run_dir``. For ``"bc"`` the model is the pretrained actor, which never trains.
    Used to measure what each method costs per env step (``examples/benchmarks/bench_method_cost.py``), which
    passes ``check_origin=False`` to time a study's checkpoints made by other code (the cost does not depend on
    where the weights came from).
    """
    task, method = get_task(spec.env_id), get_method(spec.method)
    card = _dataset(spec, task)
    demos = Demonstrations.from_minari(card.dataset_id, data_path=os.path.abspath(spec.data_path))
    pretrained: Pretrained = functools.partial(
        pretrained_checkpoint, spec, task, card, demos, progress_bar, check_origin=check_origin
    )
    make_env = _env_maker(spec, task, method, pretrained)
    if method.algo == "bc":
        return OTPR.load(pretrained(False), device=spec.device), make_env
    model, _ = _model(spec, task, method, demos, None, make_env, pretrained)
    return model, make_env


def _model(
    spec: RunSpec,
    task: Task,
    method: Method,
    demos: Demonstrations,
    ckpt_dir: str | None,
    make_env: Callable[[], Any],
    pretrained: Pretrained,
) -> tuple[OffPolicyAlgorithm, bool]:
    """Return the model to fine-tune: loaded from the run's checkpoint (True) or built fresh (False, or no ``ckpt_dir``)."""
    env = make_env()
    classes: dict[str, type[OffPolicyAlgorithm]] = {"otpr": OTPR, "ibrl": IBRL, "rlpd": RLPD}
    algo_class = classes.get(method.algo, SAC)
    if ckpt_dir is not None:
        model_path, buffer_path = os.path.join(ckpt_dir, "model.zip"), os.path.join(ckpt_dir, "replay_buffer.pkl")
        if os.path.exists(model_path) and os.path.exists(buffer_path):
            model = algo_class.load(model_path, env=env, device=spec.device)
            model.load_replay_buffer(buffer_path)
            return model, True
    policy = "MultiInputPolicy" if isinstance(demos.observations, dict) else "MlpPolicy"
    kwargs, policy_kwargs = _otpr_kwargs(spec, method)
    common: dict[str, Any] = {"seed": spec.seed, "tensorboard_log": os.path.join(spec.run_dir, "tb"), "device": spec.device}
    if method.algo == "dsrl":  # no demonstrations: the noise that would give their actions is unknown
        sac_kwargs = {k: v for k, v in kwargs.items() if k != "noise_magnitude"}
        size = int(spec.buffer_size) if spec.buffer_size else spec.steps + 1
        return SAC(policy, env, buffer_size=size, **common, **sac_kwargs, policy_kwargs=policy_kwargs or None), False
    if method.algo in ("sac", "rlpd", "ibrl"):
        extra = _from_scratch_arguments(spec, task, method, demos, policy, pretrained)
        model = algo_class(policy, env, **common, **extra, **kwargs, policy_kwargs=policy_kwargs or None)
        assert model.replay_buffer is not None
        add_demonstrations(model.replay_buffer, demos, model.action_space)  # type: ignore[arg-type]
        model.replay_buffer.freeze_demonstrations()  # type: ignore[attr-defined]
        return model, False
    if method.her:
        if policy != "MultiInputPolicy":
            raise ValueError(f"method {method.name!r} relabels goals: {task.env_id} is not goal-conditioned")
        kwargs = {**kwargs, "replay_buffer_class": HerDictReplayBuffer, "replay_buffer_kwargs": {"env_id": task.env_id}}
    otpr = OTPR(policy, env, buffer_size=_buffer_size(spec, demos), policy_kwargs=policy_kwargs, **common, **kwargs)
    start_from_pretrained(otpr, pretrained(False), demos)
    return otpr, False


def _from_scratch_arguments(
    spec: RunSpec, task: Task, method: Method, demos: Demonstrations, policy: str, pretrained: Pretrained
) -> dict[str, Any]:
    """Return the replay arguments (demonstrations as half of every batch, HER if asked) and IBRL's proposer."""
    dict_obs = policy == "MultiInputPolicy"
    extra: dict[str, Any] = {"buffer_size": _buffer_size(spec, demos)}
    extra["replay_buffer_class"] = SymmetricDictReplayBuffer if dict_obs else SymmetricReplayBuffer
    if method.her:
        if not dict_obs:
            raise ValueError(f"method {method.name!r} relabels goals: {task.env_id} is not goal-conditioned")
        extra["replay_buffer_class"] = HerSymmetricDictReplayBuffer
        extra["replay_buffer_kwargs"] = {"env_id": task.env_id}
    if method.algo == "ibrl":
        extra["il_policy"] = OTPR.load(pretrained(True), device=spec.device).policy
    return extra


class _EvaluateAndCheckpoint(BaseCallback):
    """Every ``eval_freq`` steps: checkpoint the model and its replay buffer, then evaluate and log the row."""

    def __init__(self, spec: RunSpec, ckpt_dir: str, evals_path: str, evaluate: Callable[[Any, int], dict[str, float]]):
        super().__init__()
        self.spec, self.ckpt_dir, self.evals_path, self.evaluate = spec, ckpt_dir, evals_path, evaluate
        self.hook: EvaluationHook | None = None

    def _on_step(self) -> bool:
        t = self.model.num_timesteps
        if t % self.spec.eval_freq == 0 and t < self.spec.steps:
            row = self.evaluate(self.model, t)
            # The checkpoint first: a row is only ever in the log if the state after it can be resumed.
            assert isinstance(self.model, OffPolicyAlgorithm)
            save_checkpoint(self.model, self.ckpt_dir)
            append_evaluation(self.evals_path, row)
            self.logger.record("eval/success_rate", row["success"])
            if self.hook:
                self.hook(row)
        return True


def save_checkpoint(model: OffPolicyAlgorithm, ckpt_dir: str) -> None:
    """Write ``model.zip`` and ``replay_buffer.pkl`` in ``ckpt_dir``, each replaced atomically."""
    os.makedirs(ckpt_dir, exist_ok=True)
    for name, save in (("replay_buffer.pkl", model.save_replay_buffer), ("model.zip", model.save)):
        tmp = os.path.join(ckpt_dir, "tmp-" + name)
        save(tmp)
        os.replace(tmp, os.path.join(ckpt_dir, name))


def _finish(
    spec: RunSpec,
    card: DatasetCard,
    model: BaseAlgorithm,
    rows: list[dict[str, float]],
    fps: float,
    origin: dict[str, Any],
    final_stochastic: float | None = None,
) -> dict[str, Any]:
    model.save(os.path.join(spec.run_dir, "model"))
    finals = [r for r in rows if r["final"]]
    summary = {
        "env_id": spec.env_id,
        "method": spec.method,
        "seed": spec.seed,
        "dataset": card.dataset_id,
        "demonstrators_success": card.success_rate,
        "start_success": rows[0]["success"],
        "final_success": finals[-1]["success"] if finals else float("nan"),
        # the final model on the same episodes, predict(deterministic=False); None for "bc" (it never collects)
        "final_success_stochastic": final_stochastic,
        "steps": int(rows[-1]["timesteps"]),
        "wall_time": rows[-1]["wall_time"],
        "env_steps_per_s": fps,
        "done": True,
        "provenance": origin,  # of the process that finished the run (spec.json has the one that started it)
    }
    diagnostics = read_diagnostics(os.path.join(spec.run_dir, "tb"))
    if diagnostics:
        summary["diagnostics"] = diagnostics
    with open(os.path.join(spec.run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
