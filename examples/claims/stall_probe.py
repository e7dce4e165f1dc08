"""Why H's deterministic policy stalls at the object: its guidance at the stalled states, split into its terms.

For every seed of a regime (``--regime``, (a) by default) with both an H run and an advantage run finished, H's
final model acts deterministically on the first ``--episodes`` evaluation episodes. A state is *stalled* when, at
step ``--step``, the gripper is within 2 cm of the object with its fingers open
(:data:`otpr_sb3.benchmark.failures.REACH_DISTANCE`, :data:`~otpr_sb3.benchmark.failures.CLOSED_WIDTH`). At each
stalled state, H's deterministic action is taken twice,
with the gripper command set to close (-1) and to open (+1), and scored by each model's guidance:

- H's score ``z = u(s) + v(a) - c(s, a)`` (:meth:`~otpr_sb3.guidance.CompatibilityGuidance.grouped_scores`),
  close minus open, and its terms: the action potential ``v`` and the cost ``c`` (its critic part alone, too);
- the advantage model's score of the same two actions, and both actors' deterministic gripper command.

And over the replay: 2,048 transitions of H's last checkpoint's replay buffer (sampled after seeding numpy with 0),
the share of actions that close the gripper and the share of states where H's critic prefers closing (at the
actor's deterministic action there), which shows whether closing is over-demanded against the action marginal
that ``v`` enforces.

Means over the stalled states of each seed go to ``--out``. ``--arm "H, unmasked"`` probes the unmasked H arm the
same way (against the same advantage models), to compare the two arms' action potentials::

    python examples/claims/stall_probe.py --runs-dir outputs/claims_report/runs --out docs/data/claims/stall_probe.json
    python examples/claims/stall_probe.py --runs-dir outputs/claims_report/runs --arm "H, unmasked" \
        --out docs/data/claims/stall_probe_unmasked.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Any

import numpy as np
import torch as th
from claims_tables import arm_of
from claims_verdicts import regime_of

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.evaluation import EVAL_SEED
from otpr_sb3.benchmark.failures import CLOSED_WIDTH, REACH_DISTANCE
from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.benchmark.tasks import get_task


def stalled_states(model: OTPR, env: Any, episodes: int, step: int) -> list[dict[str, np.ndarray]]:
    """Observations at ``step`` of the deterministic episodes where the gripper is at the object, fingers open."""
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + ep)
        for t in range(step + 1):
            o = obs["observation"]
            if t == step and np.linalg.norm(o[0:3] - o[3:6]) < REACH_DISTANCE and o[9] + o[10] > CLOSED_WIDTH:
                out.append(obs)
            obs, _, terminated, truncated, _ = env.step(model.predict(obs, deterministic=True)[0])
            if terminated or truncated:
                break
    return out


@th.no_grad()
def close_minus_open(h: OTPR, adv: OTPR, obs: dict[str, np.ndarray]) -> dict[str, float]:
    """H's score and its terms, and the advantage model's score, of closing minus opening at H's action."""
    p = h.policy
    obs_n = p.prepare_obs(p.obs_to_tensor(obs)[0])
    action = p.sample_actions(obs_n, p.eval_noise[None])
    pair = action.repeat(2, 1)
    pair[0, -1], pair[1, -1] = -1.0, 1.0  # Fetch's last action dimension is the gripper: -1 closes
    y = pair[None]
    g = p.guidance
    z, _ = g.grouped_scores(p, obs_n, y)
    v = g.v(pair)
    cost, critic = g.dual_cost.grouped(obs_n, y)[0], g.dual_cost.critic_grouped(obs_n, y)[0]
    q = adv.policy
    adv_obs = q.prepare_obs(q.obs_to_tensor(obs)[0])
    z_adv, _ = q.guidance.grouped_weights(q, adv_obs, y)
    return {
        "h_gripper": float(h.predict(obs, deterministic=True)[0][-1]),
        "adv_gripper": float(adv.predict(obs, deterministic=True)[0][-1]),
        "h_score": float(z[0, 0] - z[0, 1]),
        "h_v": float(v[0] - v[1]),
        "h_cost": float(cost[0] - cost[1]),
        "h_critic_cost": float(critic[0] - critic[1]),
        "adv_score": float(z_adv[0, 0] - z_adv[0, 1]),
    }


@th.no_grad()
def replay_demand(h: OTPR, run_dir: str, n: int = 2048) -> dict[str, float]:
    """Share of closing actions in H's replay, and share of its states where H's critic prefers closing."""
    h.load_replay_buffer(os.path.join(run_dir, "checkpoint", "replay_buffer.pkl"))
    np.random.seed(0)  # noqa: NPY002  (SB3's buffers draw their indices from the global numpy generator)
    batch = h.replay_buffer.sample(n)
    p = h.policy
    obs_n = p.prepare_obs(batch.observations)
    action = p.sample_actions(obs_n, p.eval_noise.expand(n, -1).contiguous())
    y = action[:, None].repeat(1, 2, 1)
    y[:, 0, -1], y[:, 1, -1] = -1.0, 1.0
    critic = p.guidance.dual_cost.critic_grouped(obs_n, y)
    keypoints = p.guidance.keypoint_actions
    return {
        "replay_closing_share": float((batch.actions[:, -1] < 0).float().mean()),
        "critic_prefers_close_share": float((critic[:, 0] < critic[:, 1]).float().mean()),
        "keypoints": int(keypoints.shape[0]),
        # under the mask, the keypoint actions belong to their keypoint states: regular states share the rest
        "keypoint_closing_share": float((keypoints[:, -1] < 0).float().mean()) if keypoints.shape[0] else None,
        "reference_mass": float(p.guidance.reference_mass),
    }


def final_models(runs_dir: str, regime: str = "a") -> dict[tuple[str, int], str]:
    """(arm, seed) -> run directory of every finished report run of ``regime`` with a final model."""
    out = {}
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "s*", "summary.json"))):
        run_dir = os.path.dirname(path)
        with open(os.path.join(run_dir, "spec.json")) as f:
            spec = json.load(f)
        if regime_of(spec["env_id"], spec["dataset"]) == regime and os.path.exists(os.path.join(run_dir, "model.zip")):
            out[(arm_of(spec)[0], spec["seed"])] = run_dir
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="outputs/claims_report/runs")
    parser.add_argument("--out", default="docs/data/claims/stall_probe.json")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--step", type=int, default=30)
    parser.add_argument("--arm", default="H", choices=["H", "H, unmasked"], help="the H arm whose stalls are probed")
    parser.add_argument("--regime", default="a", choices=["a", "b", "c", "d"], help="the data regime of the runs")
    args = parser.parse_args()
    th.set_num_threads(1)
    env = get_task("FetchPickAndPlace-v4").make_env()
    models = final_models(args.runs_dir, args.regime)
    rows = []
    for seed in sorted(s for arm, s in models if arm == args.arm and ("advantage", s) in models):
        h = OTPR.load(os.path.join(models[(args.arm, seed)], "model.zip"), env=env, device="cpu")
        adv = OTPR.load(os.path.join(models[("advantage", seed)], "model.zip"), env=env, device="cpu")
        probes = [close_minus_open(h, adv, obs) for obs in stalled_states(h, env, args.episodes, args.step)]
        row: dict[str, Any] = {"seed": seed, "stalled": len(probes)}
        for key in probes[0] if probes else ():
            row[key] = float(np.mean([p[key] for p in probes]))
        row["h_critic_prefers_close"] = float(np.mean([p["h_critic_cost"] < 0 for p in probes])) if probes else None
        row.update(replay_demand(h, models[(args.arm, seed)]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {"args": vars(args), "rows": rows, "provenance": provenance("cpu")}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
