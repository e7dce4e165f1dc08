"""Claim 4's cheap check: where can the keypoint mask change the coupling of the replay pairs?

Under the mask, keypoint rows send their mass to their own keypoint columns only, so the block of the replay states
and actions is an ordinary OT problem: the mask can change its coupling only through the relation cost mixed into
``c`` (Eq. 13). This script measures, on the exact solution of one replay minibatch (``neural_ot.solve_discrete``,
so the dual's training error plays no part), the total-variation distance between the replay block's plan with the
relation cost and without it, as a function of the relation weight, the number of keypoints, ``reg`` and whether the
relation cost is rescaled to the critic cost's spread (``relation_scale="spread"``) or enters as it is (the
paper's)::

    python examples/claims/mask_tv_check.py RUN_DIR/checkpoint --out docs/data/claims/mask_tv.json

``RUN_DIR`` is an ``otpr train`` run of OTPR (its checkpoint holds the model, the expert pairs and the replay buffer).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import torch as th
from records import write_record

from neural_ot import solve_discrete
from otpr_sb3 import OTPR

gym.register_envs(gymnasium_robotics)


def load_checkpoint(ckpt: str, env_id: str) -> OTPR:
    """The checkpoint's model with its replay buffer and expert pairs, on the CPU."""
    model = OTPR.load(os.path.join(ckpt, "model.zip"), env=gym.make(env_id), device="cpu")
    model.load_replay_buffer(os.path.join(ckpt, "replay_buffer.pkl"))
    if not len(model.expert_actions):
        raise ValueError(f"{ckpt} has no expert pairs: it is not a pretrained OTPR run")
    return model


@th.no_grad()
def replay_block_plan(model: OTPR, batch, reg: float, critic_only: bool = False) -> np.ndarray:  # noqa: ANN001
    """The exact plan of the replay block of ``batch`` under the guidance's cost.

    ``critic_only``: with the critic part of the mixed cost alone, ``(1 - w) c_Q`` (so that the comparison isolates
    the relation term: scaling ``c_Q`` by ``1 - w`` is the same as dividing ``reg`` by it).
    """
    g, reg_batch = model.policy.guidance, batch.regular()
    if critic_only:
        C = (1.0 - g.relation_weight) * g.dual_cost.critic_pairwise(reg_batch.x, reg_batch.y)
    else:
        C = g.dual_cost.matrix(reg_batch.x, reg_batch.y)
    res = solve_discrete(None, None, C.double(), reg, tol=1e-8)
    if res.status != "converged":
        raise RuntimeError(f"the exact solve did not converge (reg {reg}): {res.status}")
    return np.asarray(res.plan)


def tv(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance of two plans of mass 1."""
    return 0.5 * float(np.abs(p / p.sum() - q / q.sum()).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--regs", type=float, nargs="+", default=[0.5, 0.1, 0.02])
    parser.add_argument("--keypoints", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5, 0.8])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=3, help="minibatches averaged per setting")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    model = load_checkpoint(args.checkpoint, args.env)
    g, trainer = model.policy.guidance, model.policy.guidance.trainer
    ctx = model._update_context()
    rows, t0 = [], time.perf_counter()
    for K, scale in itertools.product(args.keypoints, ("none", "spread")):
        model.dual_kwargs["n_keypoints"] = K
        model._set_keypoints()
        g.relation_scale = scale
        spread_gen = th.Generator().manual_seed(7)
        g.update_relation_spread(ctx.sample_states(256, spread_gen), ctx.sample_actions(256, spread_gen))
        trainer.setup(ctx)
        for reg in args.regs:
            g.configure(reg=reg)
            trainer.setup(ctx)
            gen = th.Generator().manual_seed(11)
            batches = [trainer.solver.sample_batch(args.batch_size, gen) for _ in range(args.batches)]
            for w in args.weights:
                g.configure(relation_weight=w)
                base = [replay_block_plan(model, b, reg, critic_only=True) for b in batches]
                plans = [replay_block_plan(model, b, reg) for b in batches]
                row = {
                    "keypoints": K,
                    "relation_scale": scale,
                    "relation_spread": float(g.relation_spread),
                    "reg": reg,
                    "relation_weight": w,
                    "tv": float(np.mean([tv(p, q) for p, q in zip(plans, base)])),
                    "h_nonzero_frac": float(np.mean([(p > 0).mean() for p in plans])),
                }
                rows.append(row)
                print(
                    f"K={K:3d} {scale:>6} spread={row['relation_spread']:.3f} reg={reg:<5} w={w:<4} "
                    f"TV={row['tv']:.3f} H>0={row['h_nonzero_frac']:.3f}  [{time.perf_counter() - t0:.0f}s]",
                    flush=True,
                )
    write_record(args, rows)


if __name__ == "__main__":
    main()
