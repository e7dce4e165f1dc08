"""What bfloat16 critics on pairs change in the dual's problem, on a fine-tuning checkpoint.

Run: ``python examples/benchmarks/check_pair_precision.py results/fetch/runs/FetchPickAndPlace/otpr/s2/checkpoint``
(a harness checkpoint directory with ``model.zip`` and ``replay_buffer.pkl``). On held-out dual minibatches
(replay pairs and the keypoints, with the mask), compares the cost matrix of float32 and bfloat16 critics
(in units of ``reg``), the exact minibatch plans of :func:`neural_ot.solve_discrete` on each (total
variation), and the actor's H weights on replay pairs. Prints one line per minibatch.
"""

from __future__ import annotations

import argparse
import os

import gymnasium as gym
import gymnasium_robotics
import torch as th

from neural_ot import solve_discrete
from otpr_sb3 import OTPR

gym.register_envs(gymnasium_robotics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    th.set_num_threads(1)
    model = OTPR.load(os.path.join(args.checkpoint, "model.zip"), env=gym.make(args.env), dual_kwargs={"eval_freq": 0})
    model.load_replay_buffer(os.path.join(args.checkpoint, "replay_buffer.pkl"))
    model.policy.guidance.trainer.setup(model._update_context())
    policy = model.policy
    critic, reg = policy.critic, policy.guidance.reg

    def with_precision(precision: str, fn, *args, **kwargs):
        saved, critic.pair_precision = critic.pair_precision, precision
        try:
            return fn(*args, **kwargs)
        finally:
            critic.pair_precision = saved

    scale, weight = float(policy.scales.adv_spread), float(policy.guidance.relation_weight)
    print(f"reg {reg}, cost {policy.guidance.cost}, cost scale {scale:.3f}, relation weight {weight:.2f}")
    gen = th.Generator().manual_seed(0)
    for _ in range(args.batches):
        batch = model.policy.guidance.trainer.solver.sample_batch(args.batch_size, gen)
        C32, C16 = (with_precision(p, policy.guidance.dual_cost.matrix, batch.x, batch.y) for p in ("float32", "bfloat16"))
        mask = None if batch.mask is None else batch.mask.double()
        wx, wy = batch.wx.double(), batch.wy.double()
        plans = [solve_discrete(wx, wy, C.double(), reg, mask=mask, tol=1e-9).plan for C in (C32, C16)]
        err = (C16 - C32).abs() / reg
        tv = float((plans[0] - plans[1]).abs().sum() / 2 / plans[0].sum())
        print(
            f"cost error / reg: median {float(err.median()):.4f}, max {float(err.max()):.3f}; "
            f"cost spread / reg {float(C32.std()) / reg:.2f}; exact plan moves by {tv:.4f} in total variation"
        )
    data = model.replay_buffer.sample(args.batch_size)
    obs = policy.prepare_obs(data.observations)
    n_ref = model.actor_kwargs["reference_actions"]
    w32, w16 = (
        with_precision(p, policy.candidate_scores, obs, data.actions, n_reference=n_ref)[1] for p in ("float32", "bfloat16")
    )
    change = float((w16 - w32).abs().sum() / w32.abs().sum())
    print(
        f"actor H weights on {args.batch_size} replay pairs: relative L1 change {change:.4f}, "
        f"non-zero {float((w32 > 0).float().mean()):.3f} (float32) vs {float((w16 > 0).float().mean()):.3f} (bfloat16)"
    )


if __name__ == "__main__":
    main()
