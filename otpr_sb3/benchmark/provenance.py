"""Where and with what a run was made: the code's commit, package versions, the CPU and the resolved settings."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import torch as th
from stable_baselines3.common.utils import get_device

from otpr_sb3.critics import pair_dtype
from otpr_sb3.demonstrations import Demonstrations

#: Packages whose versions can change a run's numbers.
PACKAGES = ("torch", "stable-baselines3", "gymnasium", "gymnasium-robotics", "mujoco", "numpy", "otpr")
#: CPU flags that choose kernels (float32 AVX-512; bfloat16 pairs with ``pair_precision="auto"``).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: The kind of machine a run's record names (its ``spec.json``, written when it starts): a run must end on it. The
#: flags too: two "AMD EPYC" machines, with and without AVX-512, recorded different robosuite demonstrations from one
#: seed (2026-12-08).
MACHINE_KIND = ("cpu", "cpu_flags", "device", "pair_precision")
#: The repository's paths that make a run's numbers: the packages and the pins that install their dependencies.
RUN_CODE = ("neural_ot", "otpr_sb3", "pyproject.toml")
#: The code a run's record names: a run must end with it (an edited tree at the same commit is other code).
CODE = ("commit", "diff", "versions")
#: The data a run's record names: a run must end with the demonstrations it started with.
DATA = ("data_sha1",)


def git_state(path: str | None = None) -> dict[str, Any]:
    """Return the commit of the checkout holding ``path`` (this package by default), whether it is dirty, and how.

    The tree is dirty if a tracked file differs from the commit or an untracked file sits in :data:`RUN_CODE`.
    ``diff`` is then the SHA-1 of ``git diff HEAD`` over :data:`RUN_CODE` (what a run executes and installs) and of
    the untracked files there, else ``None``: two dirty trees at one commit run the same code only if those are
    equal, whatever else (docs, tests, examples) was edited. All three are ``None`` outside a git checkout (an
    installed wheel).
    """
    where = path or os.path.dirname(os.path.abspath(__file__))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None, "diff": None}
    code = [f":/{p}" for p in RUN_CODE]
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    untracked = (git("ls-files", "--others", "--exclude-standard", "--full-name", "--", *code) or "").split()
    if not status.strip() and not untracked:
        return {"commit": commit.strip(), "dirty": False, "diff": None}
    digest = hashlib.sha1((git("diff", "HEAD", "--", *code) or "").encode())
    top = (git("rev-parse", "--show-toplevel") or "").strip()
    for name in sorted(untracked):
        with open(os.path.join(top, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return {"commit": commit.strip(), "dirty": True, "diff": digest.hexdigest()}


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


def cpu_kind(record: Mapping[str, Any]) -> str | None:
    """Return the CPU kind a provenance record (or :func:`cpu_info`) names: the model and its flags; ``None`` if none.

    The model name alone does not tell machines apart whose numbers differ ("AMD EPYC" with and without AVX-512);
    a record without flags (older code) gives the model alone.
    """
    if record.get("cpu") is None:
        return None
    flags = record.get("cpu_flags")
    return str(record["cpu"]) if flags is None else f"{record['cpu']} ({', '.join(flags) or 'no listed flags'})"


def provenance(
    device: str = "auto", policy_kwargs: dict[str, Any] | None = None, demos: Demonstrations | None = None
) -> dict[str, Any]:
    """Everything about this process that a run's numbers may depend on, beyond its spec.

    Parameters
    ----------
    device : str
        The run's ``device`` setting; recorded resolved (``cpu``, ``cuda``).
    policy_kwargs : dict, optional
        The policy's keyword arguments, for the resolved ``pair_precision``.
    demos : Demonstrations, optional
        The demonstrations the run learns from, recorded as ``data_sha1`` (:meth:`Demonstrations.digest`): the
        dataset's card names its setting, the digest its numbers.
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
        **({"data_sha1": demos.digest()} if demos is not None else {}),
    }


def origin_changes(recorded: dict[str, Any], current: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    """Return ``"field old -> new"`` for each of ``fields`` that ``recorded`` names and ``current`` differs in.

    A field the record does not have (made by older code) is not compared; of a dict (``versions``), only the
    entries that differ are named.
    """
    changes = []
    for key in fields:
        if key not in recorded or recorded[key] == current.get(key):
            continue
        old, new = recorded[key], current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [
                f"{key}[{k!r}] {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new}) if old.get(k) != new.get(k)
            ]
        else:
            changes.append(f"{key} {old!r} -> {new!r}")
    return changes


def check_resumable(run_dir: str, current: dict[str, Any]) -> None:
    """Raise if the run in ``run_dir`` was started on another kind of machine or with other code than ``current``.

    A run resumed on another CPU kind (or device, or pair precision), at another commit, with other edits, other
    package versions or other demonstrations (:data:`MACHINE_KIND`, :data:`CODE`, :data:`DATA`; ``current`` is
    :func:`provenance`) would be partly made where and with what its ``spec.json`` does not say: its numbers would
    not be what its record says they are.

    Raises
    ------
    RuntimeError
        Naming the fields that differ, and what to do instead.
    """
    with open(os.path.join(run_dir, "spec.json")) as f:
        recorded = json.load(f).get("provenance", {})
    changes = origin_changes(recorded, current, MACHINE_KIND + CODE + DATA)
    if changes:
        raise RuntimeError(
            f"{run_dir} was started on another kind of machine or with other code or data ({'; '.join(changes)}): "
            "resumed here, its record would name a machine, code and data it only partly ran with. Resume it where "
            "and with what it started, or move the directory aside to run it again from the start here"
        )
