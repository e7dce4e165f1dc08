"""Claim 3's matched selectivity: the Q and advantage temperatures that make their weights as selective as H's.

On a fine-tuning checkpoint, the H guidance is trained at ``--reg`` (its dual as in ``dual_accuracy.py``), then on
held-out replay states two entropies of H's weights are measured (:mod:`otpr_sb3.guidance.selectivity`):

- actor weights: the normalised weights of a replay minibatch of (state, action) pairs, one row of ``--batch`` pairs
  (what ``actor_targets="replay"`` trains on);
- candidate selection: per state, the L actor candidates and the replay action (what collection and
  ``actor_targets="candidates"`` draw from), averaged over states.

For each, :func:`~otpr_sb3.guidance.selectivity.match_temperature` finds the temperatures of ``exp(T Q / spread(Q))``
and ``exp(T (Q - V) / spread(Q - V))`` with the same entropy::

    python examples/claims/match_selectivity.py RUN_DIR/checkpoint --reg 0.1 --out docs/data/claims/matched_r0.1.json
"""

from __future__ import annotations

import argparse
import json
import os

import gymnasium as gym
import numpy as np
import torch as th
from dual_accuracy import LEVERS, run_setting

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.guidance.selectivity import match_temperature, weight_entropy


@th.no_grad()
def entropies_and_scores(model: OTPR, n_states: int, gen: th.Generator) -> dict[str, dict[str, th.Tensor]]:
    """H's weights and the Q and advantage scores, as one actor-weight row and as per-state candidate rows."""
    policy = model.policy
    # Aligned (state, action) pairs: the replay buffer's transitions (SB3 draws them from NumPy's global stream).
    data = model.replay_buffer.sample(n_states)
    obs = policy.prepare_obs(data.observations)
    actions = data.actions
    L = policy.n_candidates
    noise = th.randn(n_states * L, policy.act_dim, generator=gen)
    cand = policy.sample_actions(obs.repeat_interleave(L, dim=0), noise).reshape(n_states, L, -1)
    cand = th.cat([cand, actions.unsqueeze(1)], dim=1)
    s = obs.repeat_interleave(L + 1, dim=0)
    a = cand.reshape(n_states * (L + 1), -1)
    q = policy.critic.min(s, a).reshape(n_states, L + 1)
    adv = q - policy.value(obs)[:, None]
    _, h_cand = policy.guidance.grouped_weights(policy, obs, cand)
    _, h_pairs = policy.guidance.weights(policy, obs, actions)
    q_pairs, v = policy.critic.min(obs, actions), policy.value(obs)
    return {
        "actor": {
            "H": h_pairs[None],
            "q": (q_pairs / policy.scales.q_spread)[None],
            "advantage": ((q_pairs - v) / policy.scales.adv_spread)[None],
        },
        "candidates": {"H": h_cand, "q": q / policy.scales.q_spread, "advantage": adv / policy.scales.adv_spread},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--reg", type=float, required=True)
    parser.add_argument("--lever", default="default", choices=list(LEVERS))
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--batch", type=int, default=256, help="replay pairs (and states) measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (SB3 samples replay from the global stream)
    model, diag = run_setting(args.checkpoint, gym.make(args.env), args.reg, LEVERS[args.lever], args.updates, 256, True)
    parts = entropies_and_scores(model, args.batch, th.Generator().manual_seed(args.seed))
    out: dict = {"reg": args.reg, "lever": args.lever, "dual": diag}
    for where, d in parts.items():
        h = weight_entropy(d["H"].double())
        target = float(h[~th.isnan(h)].mean())
        uniform = float(th.log(th.tensor(float(d["H"].shape[1]))))
        temps = {name: match_temperature(d[name], target) for name in ("q", "advantage")}
        at_one = {name: float(weight_entropy(th.softmax(d[name].double(), 1)).mean()) for name in ("q", "advantage")}
        out[where] = {"H_entropy": target, "uniform_entropy": uniform, "temperature": temps, "entropy_at_T1": at_one}
        print(
            f"{where:>10}: H entropy {target:.3f} (uniform {uniform:.3f}); matched T: "
            + ", ".join(f"{k} {v:.3g} (entropy at T=1: {at_one[k]:.3f})" for k, v in temps.items())
        )
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "args": vars(args), **out, "provenance": provenance("cpu")}, f, indent=1)


if __name__ == "__main__":
    main()
