"""Where OTPR's PickAndPlace success stops: its failed episodes by kind, under several ways of acting.

One fine-tuning checkpoint (a run's ``checkpoint`` directory, or the run's directory for its final ``model.zip``;
acting needs no replay buffer: the guidance keeps its reference actions and keypoints in the model), evaluated on
the harness's evaluation episodes (seeds 10000, ...) with

- ``deterministic``: the harness's evaluation (DDIM from the noise mode, EMA actor);
- ``online actor``: the same with the online actor instead of its EMA;
- ``best of 8``: 8 fixed noises, the candidate the guidance scores highest (IDQL's extraction with H);
- ``best of 8 by the critic``: the same 8 candidates, the one with the lowest critic cost (the highest advantage:
  IDQL's extraction with the critic, as the ``idql-n`` baseline evaluates; ``v(a)`` left out);
- ``collection``: the stochastic policy that collects data (L candidates, one drawn by the guidance's weights);
- ``sampled``: the EMA actor from a fresh Gaussian noise at every step (no candidates, no guidance), which tells
  whether a deterministic fixed point (the gripper at the object, the fingers kept open) is what fails.

Each failed episode is classified by :func:`otpr_sb3.benchmark.failures.classify`::

    python examples/plateau/evaluation_variants.py RUN_DIR/checkpoint --out docs/data/plateau/variants.json
    python examples/plateau/evaluation_variants.py RUN_DIR --out docs/data/plateau/variants_final.json
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

import otpr_sb3.benchmark.tasks  # noqa: F401  (registers the tasks)
from otpr_sb3 import OTPR
from otpr_sb3.benchmark.evaluation import EVAL_SEED
from otpr_sb3.benchmark.failures import failure_counts
from otpr_sb3.benchmark.provenance import provenance


class Variant:
    """``predict`` of a way of acting (see the module docstring)."""

    def __init__(self, model: OTPR, how: str, seed: int = 0) -> None:
        self.model, self.how = model, how
        self.gen = th.Generator().manual_seed(seed)
        self.noise8 = th.randn(8, model.policy.act_dim, generator=th.Generator().manual_seed(0))

    @th.no_grad()
    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        policy = self.model.policy
        if self.how == "deterministic":
            return self.model.predict(obs, deterministic=True)[0], None
        obs_t, _ = policy.obs_to_tensor(obs)
        obs_n = policy.prepare_obs(obs_t)
        if self.how == "online actor":
            scaled = policy.sample_actions(obs_n, policy.eval_noise[None], use_ema=False)
        elif self.how == "best of 8":
            cand = policy.sample_actions(obs_n.repeat_interleave(8, dim=0), self.noise8).reshape(1, 8, -1)
            z, _ = policy.guidance.grouped_weights(policy, obs_n, cand)
            scaled = cand[:, int(z.argmax(1))]
        elif self.how == "best of 8 by the critic":
            cand = policy.sample_actions(obs_n.repeat_interleave(8, dim=0), self.noise8).reshape(1, 8, -1)
            scaled = cand[:, int(policy.guidance.dual_cost.critic_grouped(obs_n, cand).argmin(1))]
        elif self.how == "collection":
            scaled, _ = policy.select_action(obs_n, generator=self.gen)
        elif self.how == "sampled":
            scaled = policy.sample_actions(obs_n, th.randn(1, policy.act_dim, generator=self.gen))
        else:
            raise ValueError(f"unknown variant {self.how!r}")
        return policy.unscale_action(scaled.cpu().numpy())[0], None


VARIANTS = ("deterministic", "online actor", "best of 8", "best of 8 by the critic", "collection", "sampled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    env = gym.make(args.env)
    model = OTPR.load(os.path.join(args.checkpoint, "model.zip"), env=env, device="cpu")
    replay = os.path.join(args.checkpoint, "replay_buffer.pkl")
    if os.path.exists(replay):  # a checkpoint has it; a finished run's directory (its final model.zip) does not
        model.load_replay_buffer(replay)
    rows = []
    for how in VARIANTS:
        row = {"variant": how, **failure_counts(Variant(model, how), env, args.episodes, EVAL_SEED)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        record = {"checkpoint": args.checkpoint, "timesteps": model.num_timesteps, "args": vars(args), "rows": rows}
        with open(args.out, "w") as f:
            json.dump({**record, "provenance": provenance("cpu")}, f, indent=1)


if __name__ == "__main__":
    main()
