"""Pretrain OTPR on scripted demonstrations of a Fetch task, fine-tune it online, evaluate and plot.

Run: ``python examples/train_fetch.py`` (defaults: FetchPickAndPlace-v4, 200 noisy demos, 20k fine-tuning
steps) or ``--quick`` for a few-minute run. ``--algo sac`` trains SAC (from scratch, with the demos in
its replay buffer) for a baseline on the same task. Results go to ``outputs/<run name>/``: the model,
``evaluations.npz`` (SB3's EvalCallback format, with success rates), ``curve.csv`` and ``curve.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.monitor import Monitor

from otpr_sb3 import OTPR, Demonstrations, add_demonstrations

# The harness registers the Fetch tasks (gymnasium_robotics) without its notice on Adroit rewards, tasks not used here.
from otpr_sb3.benchmark.recording import record


def success_rate(model, env_id: str, episodes: int, seed: int = 10_000) -> float:
    """Deterministic evaluation: fraction of episodes ending with ``is_success``."""
    env = gym.make(env_id)
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, info = False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += int(info.get("is_success", False))
    return wins / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--algo", choices=["otpr", "sac"], default="otpr")
    parser.add_argument("--demos", type=int, default=200, help="expert episodes")
    parser.add_argument("--noise", type=float, default=0.3, help="std of the Gaussian noise on expert actions")
    parser.add_argument("--pretrain-steps", type=int, default=20_000)
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--eval-freq", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=30)
    parser.add_argument("--guidance", default="compatibility", choices=["compatibility", "q", "advantage"])
    parser.add_argument("--no-mask", action="store_true", help="OTPR-U instead of OTPR-M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--quick", action="store_true", help="small run for a first look (a few minutes)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: two threads on busy cores ran 0.03x as fast, docs/benchmarks_howto.rst; 2 if idle)",
    )
    args = parser.parse_args()
    if args.quick:
        args.demos, args.pretrain_steps, args.timesteps = 100, 3_000, 2_000
        args.eval_freq, args.eval_episodes = 1_000, 10
    th.manual_seed(args.seed)
    th.set_num_threads(args.threads)
    data_path = os.path.abspath(os.path.join(args.out, "minari"))
    t0 = time.time()
    card = record(args.env, args.demos, args.noise, args.seed, data_path)
    dataset_id, expert_rate = card.dataset_id, card.success_rate
    print(f"[{time.time() - t0:6.0f}s] recorded {args.demos} demos ({dataset_id}), noisy expert success {expert_rate:.2f}")
    demos = Demonstrations.from_minari(dataset_id, data_path=data_path)
    variant = ("-u" if args.no_mask else "") + ("" if args.guidance == "compatibility" else "-" + args.guidance)
    name = f"{args.algo}{variant}-{args.env.split('-')[0]}-s{args.seed}"
    run_dir = os.path.join(args.out, name)
    os.makedirs(run_dir, exist_ok=True)
    env = gym.make(args.env)
    if args.algo == "otpr":
        model = OTPR(
            "MultiInputPolicy",
            env,
            seed=args.seed,
            use_mask=not args.no_mask,
            verbose=0,
            policy_kwargs=dict(guidance=args.guidance),
            tensorboard_log=os.path.join(run_dir, "tb"),
        )
        model.pretrain(demos, n_steps=args.pretrain_steps, progress_bar=True)
    else:
        model = SAC(
            "MultiInputPolicy", env, seed=args.seed, learning_starts=0, verbose=0, tensorboard_log=os.path.join(run_dir, "tb")
        )
        model._setup_learn(0)
        add_demonstrations(model.replay_buffer, demos, model.action_space)  # type: ignore[arg-type]
    start = success_rate(model, args.env, args.eval_episodes)
    print(f"[{time.time() - t0:6.0f}s] {args.algo} before fine-tuning: success {start:.2f}")
    eval_cb = EvalCallback(
        Monitor(gym.make(args.env)),  # episode returns and lengths as SB3 reports them (and no warning)
        eval_freq=args.eval_freq,
        n_eval_episodes=args.eval_episodes,
        log_path=run_dir,
        deterministic=True,
        verbose=0,
    )
    ckpt_cb = CheckpointCallback(
        save_freq=max(args.eval_freq, 5_000), save_path=os.path.join(run_dir, "checkpoints"), save_replay_buffer=False
    )
    t1 = time.time()
    model.learn(args.timesteps, callback=[eval_cb, ckpt_cb], progress_bar=True)
    fps = args.timesteps / (time.time() - t1)
    model.save(os.path.join(run_dir, "model"))
    final = success_rate(model, args.env, args.eval_episodes)
    data = np.load(os.path.join(run_dir, "evaluations.npz"))
    steps = np.concatenate([[0], data["timesteps"]])
    rates = np.concatenate([[start], data["successes"].mean(axis=1)])
    np.savetxt(os.path.join(run_dir, "curve.csv"), np.c_[steps, rates], delimiter=",", header="timesteps,success", comments="")
    summary = {
        "algo": name,
        "expert_success": expert_rate,
        "before": start,
        "after": final,
        "env_steps_per_s": fps,
        "timesteps": args.timesteps,
        "demos": args.demos,
        "pretrain_steps": args.pretrain_steps,
    }
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(
        f"[{time.time() - t0:6.0f}s] {name}: success {start:.2f} -> {final:.2f} after {args.timesteps} steps "
        f"({fps:.0f} env steps/s); curve in {run_dir}/curve.csv"
    )
    _plot(steps, rates, expert_rate, name, os.path.join(run_dir, "curve.png"))


def _plot(steps: np.ndarray, rates: np.ndarray, expert: float, name: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, rates, marker="o", label=name)
    ax.axhline(expert, color="0.5", ls="--", label="noisy expert (demos)")
    ax.set_xlabel("environment steps (fine-tuning)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
