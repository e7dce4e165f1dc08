"""Sweeps: a TOML grid of runs (task x method x seed) executed as Ray Tune trials, resumable.

A sweep file::

    name = "pickplace"
    max_concurrent = 2          # trials at a time (two at one thread each beat one at two on 2 cores)
    threads_per_trial = 1

    [defaults]                  # RunSpec fields for every run
    steps = 30000

    [[runs]]                    # one group: every method x seed of one task
    env = "FetchPickAndPlace-v4"
    methods = ["bc", "otpr", "otpr-u"]
    seeds = [0, 1, 2]

Each call of :func:`run_sweep` launches, as a new Tune experiment, one trial for every run of the current file
that has no finished run directory; each trial calls :func:`otpr_sb3.benchmark.runner.run`, which resumes its
run from the run's own checkpoint. So a sweep stopped at any point (Ctrl-C, a lost machine) and started again
with the same command loses no finished work, and runs added to the file since (a seed, a method) are picked
up: the run directories, not Ray's experiment state, are the record of results; ``otpr report`` reads them.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import tomllib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from otpr_sb3.benchmark.evaluation import read_evaluations
from otpr_sb3.benchmark.methods import get_method
from otpr_sb3.benchmark.pretrained import CHECKPOINT_FORMAT
from otpr_sb3.benchmark.provenance import cpu_info, cpu_kind
from otpr_sb3.benchmark.runner import RunSpec, default_dataset, run
from otpr_sb3.benchmark.tasks import get_task

_RUNSPEC_FIELDS = {f.name for f in fields(RunSpec)}


@dataclass
class SweepConfig:
    """A sweep: the runs to make and how to schedule them.

    Attributes
    ----------
    name : str
        Ray Tune experiment name (each launch's state lives in ``storage/<name>-<date>-<time>``).
    runs : list of dict
        :class:`~otpr_sb3.benchmark.runner.RunSpec` keyword arguments of each run.
    runs_dir, data_path, storage : str
        Run directories, Minari datasets and Ray Tune's experiment state (keep them out of git: a checkout
        that changes tracked files under a running sweep corrupts its records).
    collect_dir : str, optional
        The tracked folder that ``otpr report --collect`` copies finished runs into: a run finished there is
        not run again (a fresh clone continues the sweep without redoing its committed runs).
    max_concurrent, cpus_per_trial, threads_per_trial : int
        Trials at a time, Ray CPUs reserved per trial, and torch threads in each.
    max_failures : int
        Retries of a failing trial (each retry resumes from the run's checkpoint).
    """

    name: str
    runs: list[dict[str, Any]]
    runs_dir: str = "outputs/runs"
    data_path: str = "outputs/minari"
    storage: str = "outputs/ray"
    collect_dir: str | None = None
    max_concurrent: int = 2
    cpus_per_trial: int = 1
    threads_per_trial: int = 1
    max_failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """Build from the parsed TOML: ``[defaults]`` and ``[[runs]]`` groups expand into one entry per method x seed.

        Raises
        ------
        ValueError
            On an unknown key, task or method, or a group without methods.
        """
        data = dict(data)
        if "name" not in data:
            raise ValueError("the sweep needs a `name`")
        defaults = dict(data.pop("defaults", {}))
        groups = data.pop("runs", [])
        if not groups:
            raise ValueError("the sweep has no [[runs]] groups")
        top = {f.name for f in fields(cls)} - {"runs", "extra"}
        unknown = set(data) - top
        if unknown:
            raise ValueError(f"unknown sweep keys {sorted(unknown)}; allowed: {sorted(top)}, [defaults], [[runs]]")
        runs: list[dict[str, Any]] = []
        for group in groups:
            group = {**defaults, **group}
            methods, seeds = group.pop("methods", None), group.pop("seeds", [0])
            if not methods:
                raise ValueError(f"a [[runs]] group needs `methods`: {group}")
            if "env" in group:
                group["env_id"] = group.pop("env")
            bad = set(group) - _RUNSPEC_FIELDS - {"method", "seed"}
            if bad:
                raise ValueError(f"unknown run keys {sorted(bad)}; allowed: {sorted(_RUNSPEC_FIELDS)}")
            get_task(group.get("env_id", ""))
            for method in methods:
                get_method(method)
            runs.extend({**group, "method": method, "seed": int(seed)} for method in methods for seed in seeds)
        # Seeds outermost, across groups too: a sweep cut short still has every arm on its first seeds (paired).
        runs.sort(key=lambda run: run["seed"])
        return cls(runs=runs, **data)

    @classmethod
    def from_toml(cls, path: str) -> SweepConfig:
        """Read a sweep file."""
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    def specs(self) -> list[RunSpec]:
        """Return the runs, with this sweep's directories (absolute, as Ray workers need) and thread count."""
        where = {"runs_dir": os.path.abspath(self.runs_dir), "data_path": os.path.abspath(self.data_path)}
        return [RunSpec(**{"threads": self.threads_per_trial, **run, **where}) for run in self.runs]


def _trial_name(trial: Any) -> str:
    run = trial.config["run"]
    return f"{get_task(run['env_id']).name}-{run['method']}-s{run['seed']}"


def _trainable(config: dict[str, Any]) -> None:
    from ray import tune

    spec = RunSpec(**config["run"])
    reported = []

    def report(row: dict[str, float]) -> None:
        reported.append(row)
        tune.report(dict(row))

    summary = run(spec, progress_bar=False, on_evaluation=report)
    if not reported:  # finished before this trial started: report its summary once, so Tune records a result
        tune.report({"timesteps": float(summary["steps"]), "success": float(summary["final_success"]), "final": 1.0})


def _record_dirs(config: SweepConfig, spec: RunSpec) -> list[str]:
    """Where a run of ``config`` may have its record: its directory under ``runs_dir``, then under ``collect_dir``."""
    rel = os.path.relpath(spec.run_dir, spec.runs_dir)
    roots = [config.runs_dir] + ([config.collect_dir] if config.collect_dir else [])
    return [os.path.join(root, rel) for root in roots]


def pending(config: SweepConfig) -> list[RunSpec]:
    """Return the runs of ``config`` that have no finished run directory (``summary.json``).

    Raises
    ------
    ValueError
        If a finished run directory of a requested run holds another run (its ``spec.json`` differs): counting it as
        done would report a run that never ran.
    """
    out = []
    for spec in config.specs():
        finished = [d for d in _record_dirs(config, spec) if os.path.exists(os.path.join(d, "summary.json"))]
        for run_dir in finished:
            if not os.path.exists(os.path.join(run_dir, "spec.json")):
                raise ValueError(f"{run_dir} has a summary.json but no spec.json: it is not a record of this harness")
            with open(os.path.join(run_dir, "spec.json")) as f:
                diffs = spec.differences(json.load(f))
            if diffs:
                raise ValueError(
                    f"{run_dir} holds another run than the sweep's {spec.method} seed {spec.seed} ({'; '.join(diffs)}); "
                    "use another `runs_dir`, or delete that directory to replace the run"
                )
        if not finished:
            out.append(spec)
    return out


def sweep_status(config: SweepConfig) -> list[dict[str, Any]]:
    """Where each run of ``config`` stands, in the sweep's order, read from its run directories (nothing is started).

    Returns
    -------
    list of dict
        Per run: ``task``, ``method`` (its run directory's name), ``seed``, ``state`` (``"finished"``: a summary in
        ``runs_dir`` or ``collect_dir``; ``"started"``: evaluations but no summary; ``"pending"``), ``steps`` (of the
        last evaluation) out of ``of`` (the run's), ``success`` (of the last evaluation: the final one of a
        finished run; NaN before any), ``wall_time`` (seconds, at that evaluation; 0 before any) and ``cpu``, the CPU
        kind its ``spec.json`` names (:func:`~otpr_sb3.benchmark.provenance.cpu_kind`; ``None`` without one).
    """
    out = []
    for spec in config.specs():
        dirs = _record_dirs(config, spec)
        finished = next((d for d in dirs if os.path.exists(os.path.join(d, "summary.json"))), None)
        record = finished or dirs[0]
        rows = read_evaluations(os.path.join(record, "evaluations.csv"))
        last = rows[-1] if rows else {"timesteps": 0, "success": float("nan"), "wall_time": 0.0}
        cpu = None
        if os.path.exists(os.path.join(record, "spec.json")):
            with open(os.path.join(record, "spec.json")) as f:
                cpu = cpu_kind(json.load(f).get("provenance", {}))
        out.append(
            {
                "task": get_task(spec.env_id).name,
                "method": os.path.basename(os.path.dirname(spec.run_dir)),
                "seed": spec.seed,
                "state": "finished" if finished else "started" if rows else "pending",
                "steps": int(last["timesteps"]),
                "of": spec.steps,
                "success": last["success"],
                "wall_time": float(last["wall_time"]),
                "cpu": cpu,
            }
        )
    return out


def time_left(status: list[dict[str, Any]]) -> tuple[float, int]:
    """Estimate the hours of one run slot that the unfinished runs of :func:`sweep_status` still need.

    A run's estimate is the mean wall-clock of the finished runs of its task and method (the same steps on the same
    task), times the share of its steps not yet made. The finished runs' wall-clock carries whatever load they ran
    under, so this is a forecast at that load, not a measurement.

    Returns
    -------
    hours : float
        The estimates' sum.
    unestimated : int
        Unfinished runs with no finished run of their task and method (not in ``hours``).
    """
    times: dict[tuple[str, str], list[float]] = {}
    for r in status:
        if r["state"] == "finished":
            times.setdefault((r["task"], r["method"]), []).append(r["wall_time"])
    hours, unestimated = 0.0, 0
    for r in status:
        if r["state"] == "finished":
            continue
        done = times.get((r["task"], r["method"]))
        if not done:
            unestimated += 1
            continue
        hours += float(np.mean(done)) * (1.0 - r["steps"] / r["of"] if r["of"] else 1.0) / 3600.0
    return hours, unestimated


def cpu_kind_conflicts(config: SweepConfig, cpu: str | None = None) -> list[dict[str, Any]]:
    """Return the runs that would give one seed of a task two CPU kinds if the sweep went on on this machine.

    Every method of a seed is compared with the others on one kind of CPU (the studies' rule, docs/claims.rst). A seed
    whose runs have all finished is complete, whatever kind ran them; in any other seed, each run started or finished
    on another kind than ``cpu`` (this machine's by default) conflicts: the seed's runs still to make would run here.

    Returns
    -------
    list of dict
        Per conflicting run: ``task``, ``method``, ``seed``, ``state`` (``"finished"`` or ``"started"``) and its ``cpu``.
    """
    here = cpu_kind(cpu_info()) if cpu is None else cpu
    seeds: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for status in sweep_status(config):
        # A spec.json is written when a run starts, before its first evaluation: such a run has started too.
        state = "started" if status["cpu"] is not None and status["state"] == "pending" else status["state"]
        seeds.setdefault((status["task"], status["seed"]), []).append({**status, "state": state})
    out = []
    for runs in seeds.values():
        if any(r["state"] != "finished" for r in runs):
            keys = ("task", "method", "seed", "state", "cpu")
            out += [{k: r[k] for k in keys} for r in runs if r["cpu"] is not None and r["cpu"] != here]
    return out


def set_aside(config: SweepConfig, dest: str, cpu: str | None = None) -> list[tuple[str, str]]:
    """Move every run of the seeds :func:`cpu_kind_conflicts` names, and their pretrained checkpoints, out of the sweep.

    Such a seed is run again whole on this kind (the studies' rule). Its finished records go to
    ``dest/<task>/<method>/s<seed>`` (the collected copy where there is one: ``dest`` is for the record, next to the
    results), everything else (a duplicate under ``runs_dir``, a started run, the seed's checkpoints in
    ``<runs_dir>/<task>/pretrained``, which the run again would otherwise start from) to ``<runs_dir>-set-aside``,
    under the same relative path. Nothing is deleted.

    Returns
    -------
    list of (str, str)
        The moves made, source and destination.

    Raises
    ------
    FileExistsError
        If a destination exists already; nothing is moved then.
    """
    seeds = {(c["task"], c["seed"]) for c in cpu_kind_conflicts(config, cpu)}
    aside = os.path.abspath(config.runs_dir).rstrip(os.sep) + "-set-aside"
    moves: list[tuple[str, str]] = []
    for spec in config.specs():
        task = get_task(spec.env_id).name
        if (task, spec.seed) not in seeds:
            continue
        rel = os.path.relpath(spec.run_dir, spec.runs_dir)
        found = [d for d in reversed(_record_dirs(config, spec)) if os.path.isdir(d)]  # the collected copy first
        for i, src in enumerate(found):
            record = i == 0 and os.path.exists(os.path.join(src, "summary.json"))
            moves.append((src, os.path.join(dest if record else aside, rel)))
    for task, seed in sorted(seeds):
        folder = os.path.join(config.runs_dir, task, "pretrained")
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        mine = [n for n in names if f"-s{seed}-{CHECKPOINT_FORMAT}." in n]  # the dataset's id has a seed too
        moves += [(os.path.join(folder, n), os.path.join(aside, task, "pretrained", n)) for n in mine]
    taken = [d for _, d in moves if os.path.exists(d)]
    if taken:
        raise FileExistsError(
            f"set_aside would replace {taken[0]} (and {len(taken) - 1} more): choose another `dest`, or move the "
            "earlier set-aside runs away"
        )
    for src, dst in moves:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)
    return moves


def check_address(address: str | None, timeout: float = 10.0) -> None:
    """Raise ``ValueError`` within ``timeout`` seconds if nothing listens at a Ray cluster's ``host:port``.

    ``None`` and ``"auto"`` (a local Ray) are not checked; ``ray://`` client addresses are checked the same way.
    """
    if address in (None, "auto", "local"):
        return
    assert address is not None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"`address` must be host:port (or ray://host:port), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"`address` {address!r}: no Ray cluster answers there ({err})") from err


def run_sweep(config: SweepConfig, address: str | None = None) -> Any:
    """Run every run of a sweep that has not finished, on Ray Tune.

    Parameters
    ----------
    config : SweepConfig
    address : str, optional
        Address of a Ray cluster (its nodes must see ``runs_dir`` and ``data_path``); default: a local Ray with
        this machine's CPUs. An address where nothing answers raises ``ValueError`` within seconds.

    Returns
    -------
    ray.tune.ResultGrid or None
        None when every run had finished (no experiment is started).
    """
    specs = pending(config)
    if not specs:
        return None
    check_address(address)
    import ray
    from ray import tune

    # Datasets first, in this process: trials would otherwise all wait on the lock of the one recording it.
    for spec in specs:
        if spec.dataset is None:
            default_dataset(spec.env_id, spec.data_path)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    trainable = tune.with_resources(_trainable, {"cpu": config.cpus_per_trial})
    # A new experiment each time, of the runs still to do: a restored one would ignore edits to the file.
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search([asdict(s) for s in specs])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=config.max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{config.name}-{stamp}",
            storage_path=os.path.abspath(config.storage),
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            verbose=1,
        ),
    )
    return tuner.fit()
