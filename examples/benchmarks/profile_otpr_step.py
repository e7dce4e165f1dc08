"""Where the milliseconds of one OTPR environment step go: collection, critic, dual, actor, the rest.

Run: ``python examples/benchmarks/profile_otpr_step.py [--env Pendulum-v1] [--steps 500] [--config scratch]``,
or ``--finetune`` for the library's defaults fine-tuning on FetchPickAndPlace-v4 after a short pretraining on
20 noisy expert episodes (the setting of ``bench_otpr_speed.py``). One gradient step per environment step;
after a warm-up, the named components are timed by wrapping the methods that do them, and the torch
operators that take the most time are listed (cProfile). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict

import gymnasium as gym
import torch as th

import otpr_sb3.otpr as otpr_module
from otpr_sb3 import OTPR

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from from_scratch import CONFIGS  # noqa: E402


def _timed(totals: dict[str, float], name: str, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--config", default="scratch", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--finetune", action="store_true", help="defaults, pretrained, on FetchPickAndPlace-v4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cprofile", action="store_true", help="time the components only (no cProfile overhead)")
    parser.add_argument(
        "--guidance",
        default="compatibility",
        help="with --finetune: the policy's guidance (``q``: OTPR's own loop with the Q guidance, no dual)",
    )
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    if args.finetune:
        import gymnasium_robotics
        from bench_otpr_speed import ENV, expert_demos

        gym.register_envs(gymnasium_robotics)
        args.env, args.config = ENV, f"defaults (fine-tuning), guidance {args.guidance}"
        env = gym.make(ENV)
        common = dict(batch_size=256, train_freq=1, gradient_steps=1, learning_starts=256, dual_start=100)
        model = OTPR("MultiInputPolicy", env, seed=0, policy_kwargs=dict(guidance=args.guidance), **common)
        model.pretrain(expert_demos(), n_steps=200, add_to_replay_buffer=True)
    else:
        env = gym.make(args.env)
        model = OTPR(
            "MultiInputPolicy" if isinstance(env.observation_space, gym.spaces.Dict) else "MlpPolicy",
            env,
            seed=0,
            dual_start=50,
            **{**CONFIGS[args.config], "dual_kwargs": {**CONFIGS[args.config].get("dual_kwargs", {}), "eval_freq": 0}},
        )
    model.learn(args.warmup)
    names = (
        "collection: L candidates, DDIM, H, draw",
        "critic: IQL (twin Q, V)",
        "dual: potentials step",
        "  of which: cost matrix (critic on all pairs)",
        "actor: score-matching step (with its targets)",
        "  across collection and actor: H with u over reference actions (critics on those pairs)",
    )
    totals: dict[str, float] = defaultdict(float, {name: 0.0 for name in names})
    policy = model.policy
    policy.select_action = _timed(totals, names[0], policy.select_action)
    otpr_module.iql_update = _timed(totals, names[1], otpr_module.iql_update)
    model._guidance_update = _timed(totals, names[2], model._guidance_update)
    model._actor_update = _timed(totals, names[4], model._actor_update)
    if hasattr(policy.guidance, "dual_cost"):  # H guidance: the dual's cost matrix and H over reference actions
        policy.guidance.dual_cost.pairwise = _timed(totals, names[3], policy.guidance.dual_cost.pairwise)
        policy.guidance.grouped_scores = _timed(totals, names[5], policy.guidance.grouped_scores)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    if not args.no_cprofile:
        profiler.enable()
    model.learn(args.steps, reset_num_timesteps=False)
    profiler.disable()
    total = time.perf_counter() - start
    per_step = 1e3 / args.steps
    print(f"{args.env}, config {args.config!r}, {args.steps} env steps: {total / args.steps * 1e3:.1f} ms per env step\n")
    print("| component | ms per env step | share |\n|---|---|---|")
    named = sum(v for k, v in totals.items() if not k.startswith("  "))
    for name, seconds in list(totals.items()) + [("other (env, buffer, SB3 loop, logging)", total - named)]:
        print(f"| {name} | {seconds * per_step:.1f} | {seconds / total:.0%} |")
    if args.no_cprofile:
        return
    print("\nTop functions by own time:\n")
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]  # type: ignore[attr-defined]
    print("| function | calls per env step | ms per env step |\n|---|---|---|")
    for (filename, line, func), (_, ncalls, tottime, _, _) in rows:
        where = func if filename.startswith("~") else f"{func} ({os.path.basename(filename)}:{line})"
        print(f"| {where} | {ncalls / args.steps:.1f} | {tottime * per_step:.2f} |")


if __name__ == "__main__":
    main()
