"""Env steps per second of OTPR fine-tuning on FetchPickAndPlace-v4 before and after the issue-24 refactor, in one
process (the pre-refactor package imported as otpr_sb3_old), alternating rounds. Also one-observation latencies."""
import sys, time, json
sys.path.insert(0, "/work/scratch/oldpkg")
sys.path.insert(0, "/work/main/examples/benchmarks")
import numpy as np, torch as th, gymnasium as gym
import otpr_sb3_old
from otpr_sb3 import OTPR
from bench_otpr_speed import expert_demos, ENV, latency_ms

th.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
rounds, steps = 3, 600
demos = expert_demos(10)
common = dict(batch_size=256, train_freq=1, gradient_steps=1, seed=0, learning_starts=256, dual_start=100)
models = {}
for name, cls in (("before", otpr_sb3_old.OTPR), ("after", OTPR)):
    m = cls("MultiInputPolicy", gym.make(ENV), **common)
    d = otpr_sb3_old.Demonstrations(**vars(demos)) if name == "before" else demos
    m.pretrain(d, n_steps=200)
    m.learn(400)
    models[name] = m
rates = {k: [] for k in models}
for r in range(rounds):
    for name, m in models.items():
        t0 = time.perf_counter()
        m.learn(steps, reset_num_timesteps=False)
        rates[name].append(steps / (time.perf_counter() - t0))
obs = gym.make(ENV).reset(seed=0)[0]
lat = {name: {"collect_ms": latency_ms(m, obs, False), "deterministic_ms": latency_ms(m, obs, True)} for name, m in models.items()}
out = {"threads": th.get_num_threads(), "steps_per_round": steps, "rates": rates, "latency": lat,
       "median_ratio_after_over_before": float(np.median(rates["after"]) / np.median(rates["before"]))}
print(json.dumps(out, indent=1))
