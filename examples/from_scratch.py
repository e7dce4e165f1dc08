"""OTPR and SAC from scratch (no demonstrations), side by side on MuJoCo-free continuous tasks.

One run per call, resumable: ``python examples/from_scratch.py run --algo otpr --seed 0`` trains on
Pendulum-v1 for 20k steps, evaluates every 1k steps (10 deterministic episodes with fixed seeds) and
appends each evaluation to ``outputs/from_scratch/<env>-<algo>-s<seed>/curve.csv``; the model and its
replay buffer are checkpointed at each evaluation, and the same command resumes an interrupted run.
``python examples/from_scratch.py report`` builds the table (steps to reach the threshold, final
return, wall-clock; mean and spread over seeds) and the learning-curve plot from the finished runs.

Two runs at a time, one torch thread each, use both cores of a 2-core machine::

    for s in 0 1 2; do python examples/from_scratch.py run --algo otpr --seed $s; done &
    for s in 0 1 2; do python examples/from_scratch.py run --algo sac --seed $s; done &
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import time

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC

from otpr_sb3 import OTPR

FIELDS = ("timesteps", "mean_return", "std_return", "wall_clock_s")


def evaluate(model, env_id: str, episodes: int, seed: int = 10_000) -> tuple[float, float]:
    """Deterministic returns over ``episodes`` episodes with fixed reset seeds (the same for every method)."""
    env = gym.make(env_id)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


# Each named setting below is one row of the docs table. The first ones pin the dual of the time this page was first
# measured (gradient ascent, learned u, reg 0.05). Since 2026-12 the library's defaults for an actor that was never
# pretrained (otpr_sb3.otpr.DEFAULT_SETTINGS["from-scratch"]) are exactly the "scratch" setting; "library" runs them.
_MEASURED_DUAL = dict(reg=0.05, dual_kwargs=dict(method="gradient", reference_actions=0))
CONFIGS: dict[str, dict] = {
    # The actor fits the intended policy (L candidates and the replay action, resampled by H; paper Sec. 4.4).
    "scratch": dict(
        **_MEASURED_DUAL,
        actor_targets="candidates",
        actor_kwargs=dict(candidate_batch_size=64),
        policy_kwargs=dict(actor_learning_rate=3e-4, n_candidates=16),
    ),
    # The previous from-scratch setting: H-weighted replay pairs, actor and dual updated at every step.
    "replay": dict(
        **_MEASURED_DUAL,
        actor_targets="replay",
        policy_delay=1,
        dual_freq=1,
        policy_kwargs=dict(actor_learning_rate=3e-4, n_candidates=16),
    ),
    # The library's defaults before 2026-12 for an untrained actor (candidate targets, actor learning rate 1e-4, L = 8),
    # with the dual above.
    "defaults-2026-11": dict(_MEASURED_DUAL),
    # OTPR("MlpPolicy", env) as constructed today: the README's from-scratch line.
    "library": {},
}
FROM_SCRATCH = CONFIGS["scratch"]
# Run directories are <env>-<label>-s<seed>; the first runs of this page were made with what is now "replay"
# (label "otpr"), and one with the defaults of that time, H-weighted replay targets ("otpr_replay_defaults").
LABELS = {"scratch": "otpr_candidates", "defaults-2026-11": "otpr_defaults", "replay": "otpr", "library": "otpr_library"}
NAMES = {
    "otpr_candidates": "OTPR, from-scratch setting (candidate targets, actor lr 3e-4, L = 16)",
    "otpr_library": "OTPR, library defaults since 2026-12 (the from-scratch setting), untuned seeds",
    "otpr_defaults": "OTPR, library defaults before 2026-12 (candidate targets, actor lr 1e-4, L = 8)",
    "otpr": "OTPR, replay targets (actor lr 3e-4, L = 16, every step)",
    "sac": "SAC, SB3 defaults",
}


def make_model(algo: str, env_id: str, seed: int, config: str = "scratch"):
    """SAC with SB3's defaults; OTPR with one of ``CONFIGS``."""
    env = gym.make(env_id)
    if algo == "sac":
        return SAC("MlpPolicy", env, seed=seed, device="auto")
    return OTPR("MlpPolicy", env, seed=seed, device="auto", **CONFIGS[config])


def run(args: argparse.Namespace) -> None:
    """Train one (algo, seed), resuming from its last checkpoint if there is one."""
    th.set_num_threads(args.threads)
    name = "sac" if args.algo == "sac" else LABELS[args.config]
    out = os.path.join(args.out, f"{args.env}-{name}-s{args.seed}")
    os.makedirs(out, exist_ok=True)
    curve_path, ckpt = os.path.join(out, "curve.csv"), os.path.join(out, "last.zip")
    cls = SAC if args.algo == "sac" else OTPR
    rows: list[dict[str, float]] = []
    if os.path.exists(ckpt) and os.path.exists(curve_path):
        model = cls.load(ckpt, env=gym.make(args.env), device="auto")
        model.load_replay_buffer(os.path.join(out, "last_replay_buffer.pkl"))
        with open(curve_path) as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        rows = [r for r in rows if r["timesteps"] <= model.num_timesteps]  # drop evaluations past the checkpoint
        print(f"resuming {out} at {model.num_timesteps} steps")
    else:
        model = make_model(args.algo, args.env, args.seed, args.config)
    elapsed = rows[-1]["wall_clock_s"] if rows else 0.0
    while model.num_timesteps < args.timesteps:
        start = time.perf_counter()
        chunk = min(args.eval_freq, args.timesteps - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False, progress_bar=args.progress_bar)
        elapsed += time.perf_counter() - start
        mean, std = evaluate(model, args.env, args.eval_episodes)
        rows.append(dict(timesteps=model.num_timesteps, mean_return=mean, std_return=std, wall_clock_s=elapsed))
        model.save(ckpt)
        model.save_replay_buffer(os.path.join(out, "last_replay_buffer.pkl"))
        with open(curve_path, "w", newline="") as f:  # rewritten whole: consistent with the checkpoint
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"{args.algo} seed {args.seed}: {model.num_timesteps} steps, return {mean:.1f} +- {std:.1f}, {elapsed:.0f} s")
    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
    summary = dict(env=args.env, algo=args.algo, config=args.config, seed=args.seed, commit=commit, **rows[-1])
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f)


def report(args: argparse.Namespace) -> None:
    """Table and learning curves over seeds from the finished runs in ``--out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[np.ndarray]] = {}
    seeds: dict[str, list[str]] = {}
    for algo in args.labels or NAMES:
        for name in sorted(os.listdir(args.out)):
            path = os.path.join(args.out, name, "curve.csv")
            finished = os.path.exists(os.path.join(args.out, name, "summary.json"))
            if name.startswith(f"{args.env}-{algo}-s") and os.path.exists(path) and (finished or args.unfinished):
                curves.setdefault(algo, []).append(np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2))
                seed = name.rsplit("-s", 1)[1]
                steps = int(curves[algo][-1][-1, 0])
                seeds.setdefault(algo, []).append(seed if finished else f"{seed}: interrupted at {steps} steps")
    if not curves:
        raise SystemExit(f"no finished runs for {args.env} in {args.out}")
    if args.copy_to:  # the small result files, for committing beside the docs (checkpoints stay behind)
        for name in sorted(os.listdir(args.out)):
            src = os.path.join(args.out, name)
            if name.startswith(f"{args.env}-") and os.path.exists(os.path.join(src, "curve.csv")):
                os.makedirs(os.path.join(args.copy_to, name), exist_ok=True)
                for fname in ("curve.csv", "summary.json"):
                    if os.path.exists(os.path.join(src, fname)):
                        shutil.copy(os.path.join(src, fname), os.path.join(args.copy_to, name, fname))
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - method",
        "     - seeds",
        f"     - env steps to reach {args.threshold:g} (per seed)",
        "     - final return (mean +- std over seeds)",
        "     - best return (mean over seeds)",
        "     - wall-clock per run (s)",
    ]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for algo, runs in curves.items():
        reached = []
        for c in runs:
            hit = np.nonzero(c[:, 1] >= args.threshold)[0]
            reached.append(str(int(c[hit[0], 0])) if len(hit) else "not reached")
        final = np.array([c[-1, 1] for c in runs])
        best = np.array([c[:, 1].max() for c in runs])
        wall = np.array([c[-1, 3] for c in runs])
        lines += [
            f"   * - {NAMES[algo]}",
            f"     - {len(runs)} ({', '.join(seeds[algo])})",
            f"     - {', '.join(reached)}",
            f"     - {final.mean():.0f} +- {final.std():.0f}",
            f"     - {best.mean():.0f}",
            f"     - {wall.mean():.0f}",
        ]
        n = min(len(c) for c in runs)
        steps = runs[0][:n, 0]
        values = np.stack([c[:n, 1] for c in runs])
        ax.plot(steps, values.mean(0), label=f"{NAMES[algo].split(' (')[0]} ({len(runs)} seeds)")
        ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
    ax.axhline(args.threshold, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{args.env}, from scratch (mean, min-max over seeds)")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    with open(args.table, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.table} and {args.plot}")


def speed(args: argparse.Namespace) -> None:
    """Env steps per second of SAC and each OTPR setting, side by side in this process (one torch thread)."""
    th.set_num_threads(1)
    rates = {}
    for label in ["sac", *LABELS.values()]:
        config = next((c for c, name in LABELS.items() if name == label), "scratch")
        model = make_model("sac" if label == "sac" else "otpr", args.env, 0, config)
        model.learn(args.warmup)
        start = time.perf_counter()
        model.learn(args.steps, reset_num_timesteps=False)
        rates[label] = args.steps / (time.perf_counter() - start)
    print("| method | env steps/s | wall-clock per step vs SAC |\n|---|---|---|")
    for label, rate in rates.items():
        print(f"| {NAMES[label]} | {rate:.1f} | {rates['sac'] / rate:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train and evaluate one (algo, seed); resumes from its last checkpoint")
    p_run.add_argument("--algo", choices=["otpr", "sac"], default="otpr")
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--config", choices=sorted(CONFIGS), default="scratch", help="OTPR hyperparameters")
    p_run.add_argument("--timesteps", type=int, default=20_000)
    p_run.add_argument("--eval-freq", type=int, default=1_000)
    p_run.add_argument("--eval-episodes", type=int, default=10)
    p_run.add_argument("--threads", type=int, default=1, help="torch threads (1 when two runs share 2 cores)")
    p_run.add_argument("--progress-bar", action="store_true")
    p_speed = sub.add_parser("speed", help="env steps/s of SAC and each OTPR setting, side by side")
    p_speed.add_argument("--steps", type=int, default=500)
    p_speed.add_argument("--warmup", type=int, default=1_000)
    p_rep = sub.add_parser("report", help="table and plot over seeds from finished runs")
    p_rep.add_argument("--threshold", type=float, default=-300.0)
    p_rep.add_argument("--table", default="docs/from_scratch_table.inc")
    p_rep.add_argument("--plot", default="docs/_static/from_scratch.png")
    p_rep.add_argument("--copy-to", default=None, help="also copy each finished run's curve.csv and summary.json here")
    p_rep.add_argument("--labels", nargs="+", choices=sorted(NAMES), help="only these rows (default: all)")
    p_rep.add_argument("--unfinished", action="store_true", help="also runs that have not finished (final: their last row)")
    for p in (p_run, p_rep, p_speed):
        p.add_argument("--env", default="Pendulum-v1")
        p.add_argument("--out", default="outputs/from_scratch")
    args = parser.parse_args()
    {"run": run, "report": report, "speed": speed}[args.command](args)


if __name__ == "__main__":
    main()
