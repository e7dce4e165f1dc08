"""Floating-point work per environment step of OTPR and SAC, counted by torch (hardware-independent).

Run: ``python examples/benchmarks/count_step_flops.py [--steps 64]``. The same setting as
``bench_otpr_speed.py`` (FetchPickAndPlace-v4, one gradient step per env step, batch 256, OTPR pretrained briefly
on 20 noisy expert episodes, the dual ready): after a warm-up, ``torch.utils.flop_counter.FlopCounterMode``
counts the floating-point operations of ``--steps`` env steps of ``learn`` (collection, critic, dual and actor
updates; the held-out dual diagnostics are switched off) and prints them per env step and as a multiple of
SAC's. Wall-clock ratios (``bench_otpr_speed.py``) approach these ratios on machines
where the step is arithmetic-bound, and fall below them where per-call overhead dominates.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import gymnasium_robotics
import torch as th
from bench_otpr_speed import ENV, expert_demos
from stable_baselines3 import SAC
from torch.utils.flop_counter import FlopCounterMode

from otpr_sb3 import OTPR

gym.register_envs(gymnasium_robotics)


def flops_per_step(model, steps: int, warmup: int) -> float:
    """Floating-point operations per env step of ``model.learn`` after ``warmup`` steps."""
    model.learn(warmup)
    with FlopCounterMode(display=False) as counter:
        model.learn(steps, reset_num_timesteps=False)
    return counter.get_total_flops() / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64, help="env steps counted (a multiple of 8 covers every period)")
    parser.add_argument("--warmup", type=int, default=700, help="env steps before counting (the dual is ready by then)")
    args = parser.parse_args()
    th.set_num_threads(1)
    env = gym.make(ENV)
    common = dict(batch_size=256, train_freq=1, gradient_steps=1, seed=0, learning_starts=256)
    models = {
        "SAC (SB3 defaults, 2x256 nets)": SAC("MultiInputPolicy", env, **common),
        "SAC (3x256 nets)": SAC("MultiInputPolicy", env, policy_kwargs=dict(net_arch=[256] * 3), **common),
        "OTPR's loop with Q guidance (no dual)": OTPR(
            "MultiInputPolicy", env, dual_start=100, policy_kwargs=dict(guidance="q"), **common
        ),
        "OTPR, defaults": OTPR("MultiInputPolicy", env, dual_start=100, **common),
        "OTPR, dual every 8 steps, 4 Adam steps per cost matrix": OTPR(
            "MultiInputPolicy", env, dual_start=25, dual_freq=8, dual_kwargs=dict(steps_per_batch=4), **common
        ),
        "OTPR, both (dual every 8, 24/4 references)": OTPR(
            "MultiInputPolicy",
            env,
            dual_start=25,
            dual_freq=8,
            dual_kwargs=dict(steps_per_batch=4, reference_actions=24),
            actor_kwargs=dict(reference_actions=4),
            **common,
        ),
    }
    for model in models.values():
        if isinstance(model, OTPR):
            model.dual_kwargs["eval_freq"] = 0  # the held-out diagnostics are logging, not the loop
            model.pretrain(expert_demos(), n_steps=200, add_to_replay_buffer=True)
    rows = []
    for name, model in models.items():
        rows.append((name, flops_per_step(model, args.steps, args.warmup)))
        if isinstance(model, OTPR) and not bool(model.policy.guidance.ready):
            raise RuntimeError(f"{name}: the dual was not ready after the warm-up; raise --warmup")
    base = rows[0][1]
    print(f"### Floating-point operations per env step on {ENV} (torch's count over {args.steps} env steps)\n")
    print("| algorithm | MFLOP per env step | vs SAC defaults |")
    print("|---|---|---|")
    for name, flops in rows:
        print(f"| {name} | {flops / 1e6:.0f} | {flops / base:.2f}x |")


if __name__ == "__main__":
    main()
