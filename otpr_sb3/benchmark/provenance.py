"""Where and with what a run was made: the code's commit, package versions, the CPU and the resolved settings."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import torch as th
from stable_baselines3.common.utils import get_device

from otpr_sb3.critics import pair_dtype

#: Packages whose versions can change a run's numbers.
PACKAGES = ("torch", "stable-baselines3", "gymnasium", "gymnasium-robotics", "mujoco", "numpy", "otpr")
#: CPU flags that choose kernels (float32 AVX-512; bfloat16 pairs with ``pair_precision="auto"``).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: The kind of machine a run's record names (its ``spec.json``, written when it starts): a run must end on it.
MACHINE_KIND = ("cpu", "device", "pair_precision")


def git_state(path: str | None = None) -> dict[str, Any]:
    """Return the commit of the checkout holding ``path`` (this package by default) and whether it is dirty.

    Both are ``None`` outside a git checkout (an installed wheel).
    """
    where = path or os.path.dirname(os.path.abspath(__file__))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_info() -> dict[str, Any]:
    """Return the CPU model and which of :data:`CPU_FLAGS` it has (from Linux's ``/proc/cpuinfo``)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:  # the first processor's entries are enough: its model name comes before its flags
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def provenance(device: str = "auto", policy_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything about this process that a run's numbers may depend on, beyond its spec.

    Parameters
    ----------
    device : str
        The run's ``device`` setting; recorded resolved (``cpu``, ``cuda``).
    policy_kwargs : dict, optional
        The policy's keyword arguments, for the resolved ``pair_precision``.
    """
    resolved = get_device(device)
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    precision = (policy_kwargs or {}).get("pair_precision", "auto")
    return {
        **git_state(),
        "versions": versions,
        "python": platform.python_version(),
        **cpu_info(),
        "threads": th.get_num_threads(),
        "device": str(resolved),
        "pair_precision": str(pair_dtype(precision, resolved)).removeprefix("torch."),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def check_machine_kind(run_dir: str, current: dict[str, Any]) -> None:
    """Raise if the run in ``run_dir`` was started on another kind of machine than ``current`` (:func:`provenance`).

    A run resumed on another CPU kind (or device, or pair precision) would be partly made where its ``spec.json``
    does not say: its numbers would not be what its record says they are.

    Raises
    ------
    RuntimeError
        Naming the :data:`MACHINE_KIND` fields that differ, and what to do instead.
    """
    with open(os.path.join(run_dir, "spec.json")) as f:
        recorded = json.load(f).get("provenance", {})
    changes = [
        f"{k} {recorded[k]!r} -> {current.get(k)!r}" for k in MACHINE_KIND if k in recorded and recorded[k] != current.get(k)
    ]
    if changes:
        raise RuntimeError(
            f"{run_dir} was started on another kind of machine ({'; '.join(changes)}): resumed here, its record would "
            "name a machine it only partly ran on. Resume it on a machine of the recorded kind, or move the directory "
            "aside to run it again from the start here"
        )
