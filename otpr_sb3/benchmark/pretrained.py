"""The shared pretrained checkpoint that BC, the OTPR variants, DSRL and IBRL start from, and where it was made.

One checkpoint per (task, dataset, seed, BC steps, architecture) under ``<runs_dir>/<task>/pretrained/``, built by the
first run that needs it. Beside it, ``<name>.origin.json`` holds the :func:`~otpr_sb3.benchmark.provenance.provenance`
of the process that built it, and a run starts from it only on the same kind of machine, with the same code and
the same demonstrations (:data:`SHARED_ORIGIN`): otherwise the run's record, which names this process's machine,
code and data, would not say where its starting point was made.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from stable_baselines3.common.save_util import load_from_zip_file

from otpr_sb3.benchmark.locks import locked
from otpr_sb3.benchmark.provenance import CODE, DATA, origin_changes, provenance
from otpr_sb3.benchmark.recording import DatasetCard
from otpr_sb3.benchmark.run_spec import RunSpec
from otpr_sb3.benchmark.tasks import Task
from otpr_sb3.demonstrations import Demonstrations, add_demonstrations
from otpr_sb3.otpr import OTPR

#: Layout of the policy in pretrained checkpoints (2: the guidance is a module of the policy).
CHECKPOINT_FORMAT = "fmt2"
#: What a run and the checkpoint it starts from must share (behaviour cloning has no critic pairs: no precision).
SHARED_ORIGIN = ("cpu", "cpu_flags", "device", *CODE, *DATA)


def pretrained_checkpoint(
    spec: RunSpec,
    task: Task,
    card: DatasetCard,
    demos: Demonstrations,
    progress_bar: bool,
    default_arch: bool = False,
    check_origin: bool = True,
    origin: dict[str, Any] | None = None,
) -> str:
    """Return the path of the shared pretrained OTPR checkpoint of ``spec``'s run, building it if it is missing.

    The architecture is the run's OTPR policy arguments, or the default one with ``default_arch`` (DSRL and IBRL,
    whose policy arguments are another algorithm's). ``check_origin=False`` uses an existing checkpoint whatever its
    origin (to time a study's checkpoints with newer code; never for a run). ``origin`` is this process's
    :func:`~otpr_sb3.benchmark.provenance.provenance` with ``demos`` (a run passes its own), computed when needed if
    not given.

    Raises
    ------
    RuntimeError
        If the checkpoint exists but was made on another kind of machine, with other code or from other
        demonstrations than this process's, or has no record of where it was made (:func:`check_checkpoint_origin`).
    """
    steps = task.pretrain_steps if spec.pretrain_steps is None else int(spec.pretrain_steps)
    given = {} if default_arch else spec.policy_kwargs
    arch = {k: v for k, v in given.items() if k not in ("guidance", "guidance_kwargs")}
    key = hashlib.sha1(json.dumps(arch, sort_keys=True, default=str).encode()).hexdigest()[:8] if arch else "default"
    # `CHECKPOINT_FORMAT` in the name: a checkpoint of an older policy layout is never picked up.
    name = f"{card.dataset_id.replace('/', '_')}-bc{steps}-{key}-s{spec.seed}-{CHECKPOINT_FORMAT}"
    path = os.path.join(spec.runs_dir, task.name, "pretrained", name + ".zip")

    def here() -> dict[str, Any]:
        return origin if origin is not None else provenance(spec.device, demos=demos)

    with locked(path + ".lock"):
        if os.path.exists(path):
            if check_origin:
                check_checkpoint_origin(path, here())
            return path
        model = OTPR(
            "MultiInputPolicy" if isinstance(demos.observations, dict) else "MlpPolicy",
            task.make_env(),
            seed=spec.seed,
            policy_kwargs=arch,
            device=spec.device,
        )
        model.pretrain(demos, n_steps=steps, progress_bar=progress_bar)
        with open(origin_path(path), "w") as f:  # the record first: a checkpoint never exists without it
            json.dump({k: v for k, v in here().items() if k != "pair_precision"}, f, indent=1)  # BC has no pairs
        model.save(path + ".tmp.zip")
        os.replace(path + ".tmp.zip", path)
    return path


def origin_path(checkpoint: str) -> str:
    """Where the record of the process that built ``checkpoint`` is kept."""
    return checkpoint.removesuffix(".zip") + ".origin.json"


def check_checkpoint_origin(checkpoint: str, current: dict[str, Any]) -> None:
    """Raise unless ``checkpoint`` was made where, with what code and from what data ``current`` says (:data:`SHARED_ORIGIN`).

    Raises
    ------
    RuntimeError
        Naming the fields that differ, or saying that the checkpoint has no record of its origin (one built before
        the harness wrote it), and what to do instead.
    """
    record = origin_path(checkpoint)
    remedy = "Use another runs_dir, or move the checkpoint aside to build it again here"
    if not os.path.exists(record):
        raise RuntimeError(f"{checkpoint} has no record of where it was made ({record} is missing). {remedy}")
    with open(record) as f:
        changes = origin_changes(json.load(f), current, SHARED_ORIGIN)
    if changes:
        raise RuntimeError(
            f"{checkpoint} was made on another kind of machine or with other code or data ({'; '.join(changes)}): a run "
            f"started from it here would not be what its record says. {remedy}"
        )


def start_from_pretrained(model: OTPR, path: str, demos: Demonstrations) -> None:
    """Give ``model`` the networks, optimisers and keypoints of a pretrained OTPR checkpoint, and the demos in replay.

    The checkpoint's architecture must match ``model``'s; settings that are not parameters (guidance, mask, dual
    options, the number of keypoints drawn from the expert pairs) stay ``model``'s, so every variant fine-tunes
    the same pretrained networks.
    """
    _, params, variables = load_from_zip_file(path, device=model.device)
    if params is None or variables is None:
        raise ValueError(f"{path} is not an OTPR checkpoint with parameters")
    # The checkpoint's guidance is H; a guidance without potentials takes everything else (exactly: nothing missing).
    own, saved = model.policy.state_dict(), dict(params["policy"])
    params["policy"] = {k: v for k, v in saved.items() if k in own}  # type: ignore[assignment]
    model.set_parameters(params, exact_match=True, device=model.device)
    model.expert_obs, model.expert_actions = variables["expert_obs"], variables["expert_actions"]
    model._set_keypoints()  # this model's `n_keypoints` and seed choose them, not the checkpoint's
    model.mark_pretrained()
    assert model.replay_buffer is not None
    add_demonstrations(model.replay_buffer, demos, model.action_space)  # type: ignore[arg-type]
