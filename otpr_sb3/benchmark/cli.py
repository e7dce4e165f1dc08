"""The ``otpr`` command line: ``otpr record``, ``otpr train``, ``otpr sweep``, ``otpr report`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

DEFAULT_DATA = "outputs/minari"
DEFAULT_RUNS = "outputs/runs"


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string such as a guidance name


def parse_overrides(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` overrides into algorithm and policy (``policy.key=value``) keyword arguments.

    Values are Python literals (``3``, ``1e-3``, ``(64, 64)``, ``False``); anything else is a string. A dotted key
    sets a key of a dict argument (``dual_kwargs.method=exact``, ``policy.guidance_kwargs.temperature=0.5``).

    Raises
    ------
    ValueError
        If an item has no ``=``, an empty key part, or uses a value as a dict.
    """
    kwargs: dict[str, Any] = {}
    policy_kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise ValueError(f"`--set` takes key=value, got {item!r}")
        *path, name = key.split(".")
        target = kwargs
        if path and path[0] == "policy":
            target, path = policy_kwargs, path[1:]
        for part in path:  # a dict argument: dual_kwargs.method=exact, policy.guidance_kwargs.temperature=0.5
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"`--set` {item!r}: {part!r} is set to a value and used as a dict")
        target[name] = _value(text)
    return kwargs, policy_kwargs


def _record(args: argparse.Namespace) -> None:
    from otpr_sb3.benchmark.recording import record, record_mixed

    if args.mix:
        if args.episodes is not None or args.noise is not None:
            raise SystemExit("otpr record: give --mix or --episodes/--noise, not both")
        parts = [_mix_part(text) for text in args.mix]
        card = record_mixed(args.env, parts, args.seed, args.data_path, args.dataset_id, overwrite=args.overwrite)
    else:
        card = record(
            args.env, args.episodes, args.noise, args.seed, args.data_path, args.dataset_id, overwrite=args.overwrite
        )
    print(json.dumps(asdict(card), indent=1))


def _mix_part(text: str) -> tuple[int, float] | tuple[int, float, str]:
    try:
        fields = text.split(":")
        if len(fields) == 3:
            return int(fields[0]), float(fields[1]), fields[2]
        episodes, noise = fields
        return int(episodes), float(noise)
    except ValueError:
        raise SystemExit(
            f"otpr record: --mix parts are EPISODES:NOISE or EPISODES:NOISE:VARIANT (e.g. 50:0.1, 50:0.3:left), got {text!r}"
        ) from None


def _train(args: argparse.Namespace) -> None:
    from otpr_sb3.benchmark.runner import RunSpec, run

    kwargs, policy_kwargs = parse_overrides(args.set)
    spec = RunSpec(
        env_id=args.env,
        method=args.algo,
        seed=args.seed,
        steps=args.steps,
        dataset=args.dataset,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        final_eval_episodes=args.final_eval_episodes,
        pretrain_steps=args.pretrain_steps,
        runs_dir=args.runs_dir,
        data_path=args.data_path,
        threads=args.threads,
        device=args.device,
        kwargs=kwargs,
        policy_kwargs=policy_kwargs,
    )
    if os.path.exists(os.path.join(spec.run_dir, "summary.json")):
        state = "finished: its summary is returned"
    elif os.path.exists(os.path.join(spec.run_dir, "checkpoint", "model.zip")):
        state = "resuming from its last checkpoint"
    else:
        state = "new; the same command started again resumes it from its last checkpoint"
    print(f"run directory: {spec.run_dir} ({state})", flush=True)

    def show(row: dict[str, float]) -> None:
        step, episodes = int(row["timesteps"]), int(row["episodes"])
        print(f"[{row['wall_time']:7.0f}s] step {step:>7}: success {row['success']:.2f} on {episodes} episodes")

    summary = run(spec, progress_bar=not args.no_progress, on_evaluation=show)
    print(json.dumps(summary, indent=1))


def _sweep(args: argparse.Namespace) -> None:
    from otpr_sb3.benchmark.sweep import SweepConfig, cpu_kind_conflicts, pending, run_sweep, set_aside, sweep_status

    if args.exit_code and not args.status:
        raise SystemExit("otpr sweep: --exit-code needs --status (a sweep's own exit status says why runs are left)")
    config = SweepConfig.from_toml(args.config)
    if args.set_aside:
        moves = set_aside(config, args.set_aside)
        for src, dst in moves:
            print(f"{src} -> {dst}")
        print(f"moved {len(moves)} run record(s) and checkpoint(s) of seeds begun on another CPU kind")
        return
    if args.check_cpu_kind:
        conflicts = cpu_kind_conflicts(config)
        for r in conflicts:
            print(f"{r['task']:<28} {r['method']:<24} s{r['seed']:<4} {r['state']:<9} on {r['cpu']}")
        if conflicts:
            seeds = sorted({(r["task"], r["seed"]) for r in conflicts})
            print(
                f"{len(seeds)} unfinished seed(s) have runs made on another CPU kind than this machine's: run them on "
                "that kind, or move their runs aside (every method of a seed runs on one kind)"
            )
            raise SystemExit(4)
        print("every unfinished seed's runs so far were made on this machine's CPU kind")
        return
    if args.status:
        runs = sweep_status(config)
        for r in runs:
            if r["state"] != "pending":
                print(
                    f"{r['task']:<28} {r['method']:<24} s{r['seed']:<4} {r['state']:<9} {r['steps']:>7,}/{r['of']:<7,} "
                    f"success {r['success']:.2f}"
                )
        counts = {state: sum(r["state"] == state for r in runs) for state in ("finished", "started", "pending")}
        if counts["finished"] < len(runs):
            print(_time_left_line(runs, config.max_concurrent))
        # The counts last: scripts read the last line (scripts/studies.sh).
        print(f"{len(runs)} runs: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
        if args.exit_code and counts["finished"] < len(runs):
            raise SystemExit(3)  # for scripts (scripts/studies.sh), as `git diff --exit-code`
        return
    result = run_sweep(config, address=args.address)
    # The run directories are the record: an interrupted trial has no error in Tune but no summary either.
    total, left = len(config.runs), len(pending(config))
    print(f"{total} runs: {total - left} finished, {left} not finished (run the same command to resume)")
    if left:
        # For scripts that chain sweeps (scripts/studies.sh): 1 when a run failed, 130 when runs were stopped.
        raise SystemExit(1 if result is not None and result.errors else 130)


def _time_left_line(runs: list[dict[str, Any]], at_a_time: int) -> str:
    from otpr_sb3.benchmark.sweep import time_left

    hours, unestimated = time_left(runs)
    if unestimated == sum(r["state"] != "finished" for r in runs):
        return f"left: {unestimated} run(s), none with a finished run of its task and method to estimate its time from"
    line = f"left: about {hours:.1f} run-hours by the finished runs' wall-clock per task and method"
    line += f" ({hours / max(at_a_time, 1):.1f} h at {at_a_time} at a time)"
    if unestimated:
        line += f"; {unestimated} run(s) with none finished of their task and method not counted"
    return line


def _report(args: argparse.Namespace) -> None:
    from otpr_sb3.benchmark.report import build_report

    if args.collect:
        from otpr_sb3.benchmark.collect import collect

        copied = collect(args.runs_dir, args.collect)
        print(f"collected {len(copied)} finished run(s) into {args.collect}" + "".join(f"\n  {r}" for r in copied))
        return

    written = build_report(args.runs_dir, args.out, reps=args.bootstrap_reps)
    for path in written:
        print(path)


def _add_train(p: argparse.ArgumentParser) -> None:
    """Add the arguments of ``otpr train`` to ``p``."""
    from otpr_sb3.benchmark.methods import METHODS
    from otpr_sb3.benchmark.tasks import TASKS

    p.add_argument("--env", required=True, choices=sorted(TASKS))
    p.add_argument("--algo", "--method", dest="algo", required=True, choices=sorted(METHODS))
    p.add_argument("--dataset", default=None, help="Minari dataset id in --data-path; default: the task's setting")
    p.add_argument("--steps", type=int, default=30_000, help="online env steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-freq", type=int, default=2_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--final-eval-episodes", type=int, default=50)
    p.add_argument("--pretrain-steps", type=int, default=None, help="BC steps; default: the task's")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS)
    p.add_argument("--data-path", default=DEFAULT_DATA)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 when two runs share two cores)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "override an algorithm argument (dual_start=500), a key of a dict argument (dual_kwargs.method=exact) or a "
            "policy argument (policy.n_candidates=4, policy.guidance_kwargs.temperature=0.5); repeatable"
        ),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``otpr`` argument parser."""
    from otpr_sb3.benchmark.tasks import TASKS

    parser = argparse.ArgumentParser(prog="otpr", description="OTPR benchmark harness: record, train, sweep, report.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{record,train,sweep,report}")

    p = verbs.add_parser("record", help="record scripted-expert demonstrations as a local Minari dataset")
    p.add_argument("--env", required=True, choices=sorted(TASKS))
    p.add_argument("--episodes", type=int, default=None, help="default: the task's chosen setting")
    p.add_argument("--noise", type=float, default=None, help="std of the Gaussian action noise; default: the task's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-path", default=DEFAULT_DATA)
    p.add_argument("--dataset-id", default=None, help="default: otpr/<task>-<episodes>ep-noise<pct>-s<seed>-v0")
    p.add_argument("--overwrite", action="store_true", help="re-record an existing dataset")
    p.add_argument(
        "--mix",
        nargs="+",
        metavar="EPISODES:NOISE[:VARIANT]",
        help="a dataset of several parts, combined with Minari: mixed quality (--mix 50:0.1 50:1.0) or an expert's "
        "variants (--mix 50:0.3:left 50:0.3:right)",
    )
    p.set_defaults(func=_record)

    _add_train(verbs.add_parser("train", help="run one method on one task and seed (resumes from its last checkpoint)"))

    _add_sweep(
        verbs.add_parser(
            "sweep",
            help="run every run of a TOML-configured grid that has not finished, on Ray Tune (resumes unfinished runs)",
            description="Exit status: 0 when every run has finished, 1 when a run failed, 130 when runs were stopped "
            "(an interruption, e.g. Ctrl-C) before finishing; run the same command to resume.",
        )
    )

    p = verbs.add_parser("report", help="tables (CSV) and plots (PNG) from finished and running runs")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS)
    p.add_argument("--out", default="outputs/report")
    p.add_argument("--bootstrap-reps", type=int, default=2_000, help="stratified-bootstrap samples (rliable)")
    p.add_argument(
        "--collect",
        metavar="DEST",
        default=None,
        help="instead of a report: copy spec.json, evaluations.csv and summary.json of the finished runs into DEST",
    )
    p.set_defaults(func=_report)
    return parser


def _add_sweep(p: argparse.ArgumentParser) -> None:
    """Add the arguments of ``otpr sweep`` to ``p``."""
    p.add_argument("config", help="TOML sweep file (see examples/sweeps/)")
    p.add_argument("--address", default=None, help="Ray cluster address (host:port); default: a local Ray on this machine")
    p.add_argument("--status", action="store_true", help="print where each run stands and exit (starts nothing)")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="with --status: exit 3 when a run has not finished (started or pending), 0 when all have",
    )
    p.add_argument(
        "--check-cpu-kind",
        action="store_true",
        help="list the runs of unfinished seeds made on another CPU kind than this machine's and exit (4 if any)",
    )
    p.add_argument(
        "--set-aside",
        metavar="DEST",
        default=None,
        help="move every run of those seeds out of the sweep (finished records to DEST, the rest and the seeds' "
        "pretrained checkpoints beside runs_dir) and exit: the seeds run again whole here",
    )
    p.set_defaults(func=_sweep)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``otpr``."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"otpr {args.verb}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
