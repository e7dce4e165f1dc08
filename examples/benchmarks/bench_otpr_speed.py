"""Wall-clock of OTPR fine-tuning against SAC on FetchPickAndPlace-v4, side by side in one process.

Run: ``python examples/benchmarks/bench_otpr_speed.py [--steps 2000] [--threads 2] [--levers] [--models otpr q ...]
[--rounds 10]``.
Every algorithm does one gradient step per environment step (``train_freq=1, gradient_steps=1``, batch 256) after
the same warm-up, so the ratio isolates the cost of the diffusion actor and the OT machinery (against OTPR's own
loop with Q guidance, ``q``: what the OT part adds). Also reports per-action inference latency of OTPR (L=8
candidates, K=5 DDIM steps, and the deterministic L=1 path) and of SAC.
"""

from __future__ import annotations

import argparse
import time
import types

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import torch as th
from stable_baselines3 import SAC

from otpr_sb3 import OTPR, Demonstrations
from otpr_sb3.benchmark.experts import pick_and_place_action

gym.register_envs(gymnasium_robotics)
ENV = "FetchPickAndPlace-v4"


def autocast_split_min(critic, obs: th.Tensor, act: th.Tensor, shape: tuple[int, int]) -> th.Tensor:
    """The critics' bfloat16 pair path before the fused one (``otpr_sb3.critics`` up to ``03f960e``): autocast runs the
    hidden layers, each a product then a ReLU, with the weights cast at every call. The same numbers (the reference
    of ``tests/test_otpr_fast_paths.py`` and of ``benchmarks/test_bench_otpr.py``). Its first layer is the fast
    path's (split for shared actions; for each state's own, one product on the concatenated pairs since
    2026-12-07's ``_pair_inputs``), so that the two differ in the hidden layers only.

    ``act`` is ``(1, m, act_dim)`` (every state with the same ``m`` actions) or ``(n, m, act_dim)``; ``shape`` is
    ``(n, m)``.
    """
    from otpr_sb3.critics import _first_layer, _pair_inputs

    q, pairs = [], _pair_inputs(obs, act, shape)
    for net in critic.q_networks:
        h = _first_layer(net[0], obs, act, pairs)
        with th.autocast(obs.device.type, dtype=th.bfloat16):
            hidden = net[1:-1](h.reshape(shape[0] * shape[1], -1))
        q.append(net[-1](hidden.float()).reshape(shape))
    return th.minimum(q[0], q[1])


def split_first_layer_min(critic, obs: th.Tensor, act: th.Tensor, shape: tuple[int, int]) -> th.Tensor:
    """The fused pair path with the first layer split into state and action parts for every pair, as before
    ``12ccda6`` (which gives each state's own actions one product on the concatenated pairs instead)."""
    from otpr_sb3.critics import TwinQCritic

    return TwinQCritic._split_min(critic, obs, act, shape, concatenate=False)


def with_split_first_layer(model: OTPR) -> OTPR:
    """``model`` with its critic's pair path replaced by :func:`split_first_layer_min` (an A/B in one process)."""
    critic = model.policy.critic
    critic._split_min = types.MethodType(split_first_layer_min, critic)  # type: ignore[method-assign]
    return model


def with_autocast_pairs(model: OTPR) -> OTPR:
    """``model`` with its critic's pair path replaced by :func:`autocast_split_min` (an A/B in one process)."""
    critic = model.policy.critic
    critic._split_min = types.MethodType(autocast_split_min, critic)  # type: ignore[method-assign]
    return model


def steps_per_second(model, steps: int, warmup: int) -> float:
    model.learn(warmup)
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - t0)


def interleaved_rates(models: dict, steps: int, warmup: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Env steps/s of each model by wall-clock and by CPU time, from ``rounds`` blocks of ``steps // rounds`` steps.

    The models take turns block by block (after each one's warm-up), so a load that comes and goes, such as other
    processes on the machine, falls on all of them alike; the median block of each is kept. With one torch thread
    the CPU time is the process's own work; other processes inflate it less than wall-clock, not at all only on a
    machine whose cores share nothing (on this project's VM they do: compare the ratios, not the rates).
    """
    for model in models.values():
        model.learn(warmup)
    block = max(1, steps // rounds)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            model.learn(block, reset_num_timesteps=False)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (block / float(np.median([w for w, _ in t])), block / float(np.median([c for _, c in t])))
        for name, t in times.items()
    }


def latency_ms(model, obs, deterministic: bool, n: int = 300) -> float:
    for _ in range(20):
        model.predict(obs, deterministic=deterministic)
    t0 = time.perf_counter()
    for _ in range(n):
        model.predict(obs, deterministic=deterministic)
    return (time.perf_counter() - t0) / n * 1e3


def expert_demos(episodes: int = 20) -> Demonstrations:
    """A few noisy expert episodes, for the keypoints of OTPR-M."""
    env = gym.make(ENV)
    rng = np.random.default_rng(0)
    obs_l, act_l, next_l, rew, term, trunc = [], [], [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        done = False
        while not done:
            a = np.clip(pick_and_place_action(obs) + 0.3 * rng.normal(size=4), -1, 1).astype(np.float32)
            nxt, r, te, tr, _ = env.step(a)
            obs_l.append(obs), act_l.append(a), next_l.append(nxt), rew.append(r), term.append(te), trunc.append(tr)
            obs, done = nxt, te or tr

    def stack(ds: list) -> dict:
        return {k: np.stack([d[k] for d in ds]) for k in ds[0]}

    return Demonstrations.from_arrays(
        stack(obs_l), np.array(act_l), np.array(rew), np.array(term), np.array(trunc), stack(next_l)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="which to run: sac sac3 otpr otpr-f32 otpr-autocast otpr-split q gradient claims-h (default: all but "
        "claims-h, otpr-autocast and otpr-split)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="above 1: the models take turns in this many blocks of the steps, and CPU time is reported beside "
        "wall-clock (medians over the blocks)",
    )
    parser.add_argument(
        "--levers", action="store_true", help="also OTPR with fewer critic pairs (dual_freq, reference actions)"
    )
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    env = gym.make(ENV)
    obs, _ = env.reset(seed=0)
    common = dict(batch_size=256, train_freq=1, gradient_steps=1, seed=0, learning_starts=256)
    builders = {
        "sac": ("SAC (SB3 defaults, 2x256 nets)", lambda: SAC("MultiInputPolicy", gym.make(ENV), **common)),
        "sac3": (
            "SAC (3x256 nets, like OTPR's critics)",
            lambda: SAC("MultiInputPolicy", gym.make(ENV), policy_kwargs=dict(net_arch=[256] * 3), **common),
        ),
        "otpr": (
            "OTPR (L=8, K=5, 3x256 actor and critics)",
            lambda: OTPR("MultiInputPolicy", gym.make(ENV), dual_start=100, **common),
        ),
        # The pairs' precision on its own (the default is bfloat16 on CPUs with AMX tiles).
        "otpr-f32": (
            "OTPR, float32 pairs",
            lambda: OTPR(
                "MultiInputPolicy", gym.make(ENV), dual_start=100, policy_kwargs=dict(pair_precision="float32"), **common
            ),
        ),
        # The pair path before the fused one (same numbers): the fused path's gain, in one process.
        "otpr-autocast": (
            "OTPR, pairs through autocast (before 284c637)",
            lambda: with_autocast_pairs(OTPR("MultiInputPolicy", gym.make(ENV), dual_start=100, **common)),
        ),
        # The first layer split for every pair (before 12ccda6; equal up to float rounding): the concatenation's gain.
        "otpr-split": (
            "OTPR, first layer split for every pair (before 12ccda6)",
            lambda: with_split_first_layer(OTPR("MultiInputPolicy", gym.make(ENV), dual_start=100, **common)),
        ),
        # No dual and no H: what the OT machinery costs.
        "q": (
            "OTPR's loop with Q guidance (no dual)",
            lambda: OTPR("MultiInputPolicy", gym.make(ENV), dual_start=100, policy_kwargs=dict(guidance="q"), **common),
        ),
        # The dual before u came from reference actions: gradient ascent, learned u.
        "gradient": (
            "OTPR, previous dual (gradient, learned u)",
            lambda: OTPR(
                "MultiInputPolicy",
                gym.make(ENV),
                dual_start=100,
                dual_kwargs=dict(method="gradient", reference_actions=0),
                **common,
            ),
        ),
        # The H of the claims study (docs/claims.rst): reg 0.05, u over 256 reference actions, relation cost rescaled.
        "claims-h": (
            "OTPR, claims' H (reg 0.05, 256 reference actions, masked, spread)",
            lambda: OTPR(
                "MultiInputPolicy",
                env,
                dual_start=100,
                reg=0.05,
                relation_weight=0.1,
                dual_kwargs=dict(reference_actions=256),
                policy_kwargs=dict(guidance_kwargs=dict(relation_scale="spread")),
                **common,
            ),
        ),
    }
    chosen = args.models or ["sac", "sac3", "otpr", "otpr-f32", "q", "gradient"]
    unknown = sorted(set(chosen) - set(builders))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(builders)}")
    models = {builders[key][0]: builders[key][1]() for key in chosen}
    if args.levers:  # fewer critic pairs per env step: the dual's cost matrix less often, fewer references for u
        for name, kwargs in {
            "OTPR, dual every 4 steps, 2 Adam steps per cost matrix": dict(dual_freq=4, dual_kwargs=dict(steps_per_batch=2)),
            "OTPR, dual every 8 steps, 4 Adam steps per cost matrix": dict(dual_freq=8, dual_kwargs=dict(steps_per_batch=4)),
            "OTPR, 24 reference actions (4 for the actor)": dict(
                dual_kwargs=dict(reference_actions=24), actor_kwargs=dict(reference_actions=4)
            ),
            "OTPR, both (dual every 8, 24/4 references)": dict(
                dual_freq=8, dual_kwargs=dict(steps_per_batch=4, reference_actions=24), actor_kwargs=dict(reference_actions=4)
            ),
        }.items():
            models[name] = OTPR("MultiInputPolicy", gym.make(ENV), dual_start=100, **kwargs, **common)
    for model in models.values():
        if isinstance(model, OTPR):
            model.pretrain(expert_demos(), n_steps=200, add_to_replay_buffer=True)
    rows, cpu_rows = [], []
    if args.rounds > 1:
        rates = interleaved_rates(models, args.steps, args.warmup, args.rounds)
        rows, cpu_rows = [(name, r[0]) for name, r in rates.items()], [(name, r[1]) for name, r in rates.items()]
    else:
        for name, model in models.items():
            sps = steps_per_second(model, args.steps, args.warmup)
            rows.append((name, sps))
            print(f"{name}: {sps:.1f} env steps/s", flush=True)
    names = {key: builders[key][0] for key in chosen}
    lat = {}
    if "otpr" in chosen:
        otpr = models[names["otpr"]]
        lat["OTPR collection (L=8 candidates, K=5 DDIM, H resampling)"] = latency_ms(otpr, obs, deterministic=False)
        lat["OTPR evaluation (L=1, fixed noise, K=5)"] = latency_ms(otpr, obs, deterministic=True)
    if "sac" in chosen:
        lat["SAC (stochastic)"] = latency_ms(models[names["sac"]], obs, deterministic=False)
    print(f"\n### Fine-tuning speed on {ENV} ({args.steps} steps, 1 gradient step per env step, batch 256)\n")
    labels = (("sac", "SAC defaults"), ("sac3", "SAC 3x256"), ("q", "Q loop"))
    refs = [(label, dict(rows)[names[key]]) for key, label in labels if key in chosen]
    print("| algorithm | env steps/s | " + " | ".join(f"wall-clock per env step vs {label}" for label, _ in refs) + " |")
    print("|---|---|" + "---|" * len(refs))
    for name, sps in rows:
        print(f"| {name} | {sps:.1f} | " + " | ".join(f"{rate / sps:.2f}x" for _, rate in refs) + " |")
    if cpu_rows:
        print(f"\n### Fine-tuning CPU time on {ENV} (the same blocks, {args.rounds} rounds, medians)\n")
        cpu_refs = [(label, dict(cpu_rows)[names[key]]) for key, label in labels if key in chosen]
        print(
            "| algorithm | env steps per CPU second | "
            + " | ".join(f"CPU time per env step vs {label}" for label, _ in cpu_refs)
            + " |"
        )
        print("|---|---|" + "---|" * len(cpu_refs))
        for name, sps in cpu_rows:
            print(f"| {name} | {sps:.1f} | " + " | ".join(f"{rate / sps:.2f}x" for _, rate in cpu_refs) + " |")
    if lat:
        print(f"\n### Per-action inference latency (one observation, CPU, {args.threads} threads)\n")
        print("| policy | ms per action |")
        print("|---|---|")
        for name, ms in lat.items():
            print(f"| {name} | {ms:.2f} |")
    if "otpr" in chosen:
        print(
            f"\n(dual ready during the OTPR run: {bool(otpr.policy.guidance.ready)}; "
            f"updates: {otpr._n_updates}, dual updates: {otpr.dual_updates})"
        )


if __name__ == "__main__":
    main()
