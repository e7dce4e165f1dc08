"""Dual and guidance diagnostics of a finished run, read from its TensorBoard log into ``summary.json``.

OTPR logs, at a fixed interval, the held-out marginal error of the plan its potentials imply and the gap of
its dual objective to the exact minibatch optimum (``train/marginal_error``, ``train/dual_gap``), and per
log interval the share of replay pairs with ``H > 0`` (``train/h_nonzero_frac``) and of collected states
where H gave no candidate weight (``rollout/h_fallback_frac``), and the entropy of the actor's normalised
weights over its replay batch (``train/h_entropy``, for every weighted guidance: ``ln 256 = 5.55`` is
uniform weights on the default batch, lower is more selective). Their medians over the run, after the dual
started guiding, go into the run's summary: the TensorBoard files are not kept with the committed results.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import numpy as np

#: Logged scalars summarised, and the name each gets in ``summary["diagnostics"]``.
TAGS = {
    "train/marginal_error": "marginal_error",
    "train/dual_gap": "dual_gap",
    "train/action_marginal_shift": "action_marginal_shift",
    "train/h_nonzero_frac": "h_nonzero_frac",
    "rollout/h_fallback_frac": "h_fallback_frac",
    "train/h_entropy": "weight_entropy",
}


def read_diagnostics(tb_dir: str) -> dict[str, float]:
    """Median of each of :data:`TAGS` after the dual was ready, from the newest TensorBoard run in ``tb_dir``.

    SB3 writes a run resumed with ``reset_num_timesteps=False`` into the same ``<name>_<k>`` directory, and a
    run started over (no checkpoint) into a new one: so the newest directory is the run, every event file in
    it is read. Steps before the first ``train/dual_ready == 1`` are left out (every guidance uses the
    expectile fallback until then).

    Returns
    -------
    dict
        ``{name: median}`` for the tags present, plus ``dual_ready_step``; empty without a log or without
        any of the tags.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def run_number(path: str) -> int:
        suffix = os.path.basename(path).rsplit("_", 1)[-1]
        return int(suffix) if suffix.isdigit() else -1

    runs = sorted((d for d in glob.glob(os.path.join(tb_dir, "*")) if os.path.isdir(d)), key=run_number)
    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(runs[-1], "events.out.tfevents.*"))) if runs else []:
        events = EventAccumulator(path, size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    if not series:
        return {}
    ready = [step for step, value in series.get("train/dual_ready", []) if value >= 1.0]
    start = min(ready) if ready else 0
    out: dict[str, float] = {"dual_ready_step": float(start)}
    for tag, name in TAGS.items():
        values = [value for step, value in series.get(tag, []) if step >= start]
        if values:
            out[name] = float(np.median(values))
    return out if len(out) > 1 else {}  # SAC logs none of them


def add_diagnostics(run_dir: str) -> dict[str, Any]:
    """Write :func:`read_diagnostics` of ``run_dir/tb`` into ``run_dir/summary.json`` and return the summary.

    Raises
    ------
    FileNotFoundError
        If the run has no ``summary.json`` (it has not finished).
    """
    path = os.path.join(run_dir, "summary.json")
    with open(path) as f:
        summary = json.load(f)
    diagnostics = read_diagnostics(os.path.join(run_dir, "tb"))
    if diagnostics:
        summary["diagnostics"] = diagnostics
        with open(path + ".tmp", "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(path + ".tmp", path)
    return summary
