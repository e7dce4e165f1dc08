"""Write the report sweep of claims 3 and 4 from the tuning records: each arm at its kept configuration.

The configuration of every arm is read from the ``spec.json`` of its kept tuning runs (``claims_tables.chosen_configs``:
the protocol's rule), so the report runs exactly the settings that were tuned. Regimes (a) (the task's default
demonstrations), (b) (25 of them), (c) (50 at noise 0.1 + 50 at noise 1.0) and (d) (two expert variants, 50 each),
seeds 0-9, the protocol's run settings, one file per regime so that regimes run in the protocol's order, (a) and (c)
first (a sweep runs its seeds outermost, and a session's runs end with it)::

    python examples/claims/report_sweep.py   # writes examples/sweeps/claims_report_{a,b,c,d}.toml
    python examples/claims/report_sweep.py --wave candidates   # examples/sweeps/claims_candidates_report_{a,c}.toml

The second wave (every arm with ``actor_targets="candidates"``, tuned by ``claims_candidates_tuning.toml``) is
reported in the regimes the first wave reported, (a) and (c).

It refuses while an arm has no kept configuration (tuning runs still missing), unless ``--partial``: then it writes
the arms that have one and names the others in a comment. Rerun it once they are in: the runs already made keep their
run directories (a run's directory is its settings), and the sweep runs only the new arm's.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from claims_tables import ARMS, CANDIDATES_TUNING, TUNING, arm_of, chosen_configs, tuning_runs

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
SWEEPS = os.path.join(ROOT, "examples", "sweeps")
MIXED = "otpr/fetchpickandplace-mix-50ep-noise10-50ep-noise100-s0-v0"
FEW = "otpr/fetchpickandplace-25ep-noise30-s0-v0"
MULTIMODAL = "otpr/fetchpickandplace-mix-50ep-noise30-left-50ep-noise30-right-s0-v0"
SEEDS = list(range(10))


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def kept_settings(partial: bool = False, runs_dir: str = TUNING) -> dict[str, dict[str, Any]]:
    """Arm -> the method, kwargs and policy_kwargs of its kept tuning runs (only the arms that have one if ``partial``)."""
    chosen = chosen_configs(tuning_runs(runs_dir))
    missing = [arm for arm in ARMS if arm not in chosen]
    if missing and not partial:
        raise SystemExit(f"no kept configuration yet for {missing}: their tuning runs are not all in (or pass --partial)")
    out = {}
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "s*", "spec.json"))):
        with open(path) as f:
            spec = json.load(f)
        arm, config = arm_of(spec)
        if chosen[arm] == config:
            out[arm] = {"method": spec["method"], "kwargs": spec["kwargs"], "policy_kwargs": spec["policy_kwargs"]}
    return out


#: Regime -> its dataset (None: the task's default) and the command that records it.
REGIMES = {
    "a": (None, None),
    "b": (FEW, "--episodes 25 --noise 0.3"),
    "c": (MIXED, "--mix 50:0.1 50:1.0"),
    "d": (MULTIMODAL, "--mix 50:0.3:left 50:0.3:right"),
}

#: Wave -> its tuning records, the stem of its report files and runs folder, and the regimes it reports.
WAVES = {
    "first": (TUNING, "claims_report", tuple(REGIMES)),
    "candidates": (CANDIDATES_TUNING, "claims_candidates_report", ("a", "c")),
}


def sweep_text(settings: dict[str, dict[str, Any]], regime: str, wave: str = "first") -> str:
    """The TOML of the report sweep of one regime (``"a"``, ``"b"``, ``"c"`` or ``"d"``) of a wave (see ``WAVES``)."""
    if wave not in WAVES:
        raise ValueError(f"wave must be one of {sorted(WAVES)}, got {wave!r}")
    _, stem, regimes = WAVES[wave]
    if regime not in regimes:
        raise ValueError(f"regime must be one of {list(regimes)} for the {wave} wave, got {regime!r}")
    dataset, record = REGIMES[regime]
    how = [f"#   otpr record --env FetchPickAndPlace-v4 {record} --data-path outputs/minari"] if dataset else []
    lines = [
        "# Claims 3 and 4 (docs/claims.rst): the report runs, written by examples/claims/report_sweep.py from the",
        "# tuning records (each arm at its kept configuration). "
        + ("Second wave (candidate actor targets), regime" if wave == "candidates" else "Regime")
        + f" ({regime}), seeds 0-9."
        + (" Record its data first:" if dataset else ""),
        *how,
        f"#   otpr sweep examples/sweeps/{stem}_{regime}.toml",
        f'name = "{stem.replace("_", "-")}-{regime}"',
        f'runs_dir = "outputs/{stem}/runs"',
        'data_path = "outputs/minari"',
        f'storage = "outputs/{stem}/ray"',
        "max_concurrent = 2",
        "threads_per_trial = 1",
        "",
        "[defaults]",
        'env = "FetchPickAndPlace-v4"',
        "steps = 10000",
        "eval_freq = 1000",
        "eval_episodes = 20",
        "final_eval_episodes = 100",
        f"seeds = {SEEDS}",
    ]
    missing = [arm for arm in ARMS if arm not in settings]
    if missing:
        lines += ["", f"# Not yet in (no kept configuration when this file was written): {', '.join(missing)}"]
    for arm in [arm for arm in ARMS if arm in settings]:
        s = settings[arm]
        lines += ["", f"# regime ({regime}), {arm}", "[[runs]]", f'methods = ["{s["method"]}"]']
        if dataset:
            lines.append(f'dataset = "{dataset}"')
        for key in ("kwargs", "policy_kwargs"):
            if s[key]:
                lines.append(f"{key} = {_toml_value(s[key])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wave", choices=sorted(WAVES), default="first")
    parser.add_argument("--partial", action="store_true", help="write the arms that have a kept configuration")
    args = parser.parse_args()
    runs_dir, stem, regimes = WAVES[args.wave]
    kept = kept_settings(partial=args.partial, runs_dir=runs_dir)
    for regime in regimes:
        with open(os.path.join(SWEEPS, f"{stem}_{regime}.toml"), "w") as f:
            f.write(sweep_text(kept, regime, args.wave))
        print(f"wrote examples/sweeps/{stem}_{regime}.toml")
