"""What H does: OTPR's compatibility function on a Fetch fine-tuning snapshot, next to Q and advantage weights.

Reads a snapshot (model and replay buffer) written by ``examples/dual_study.py`` and writes the figures of
``docs/what_h_does.rst`` to ``docs/_static/`` with the numbers they show printed::

    python examples/what_h_does.py outputs/dual_study/defaults

1. Candidate weights at a few replay states: L actor candidates and the replay action, weighted by H (the
   potentials of the run), by exp(T Q / spread) and by exp(T (Q - V) / spread).
2. The exact minibatch problem (``neural_ot.solve_discrete``, 256 replay states and actions plus the
   keypoints): where expert states send their mass, with and without the mask, as the relation weight varies.
3. Sparsity of H as eps varies, on the same minibatch.
4. Where H is a Q ranking and where it is not: within a state, H orders actions by ``v(a) - c(s, a)``, Q by
   ``-c(s, a)``; they agree when ``v`` is flat over the actions the state reaches.
"""

from __future__ import annotations

import argparse
import os

import gymnasium as gym
import gymnasium_robotics
import matplotlib
import numpy as np
import torch as th
from dual_study import load_snapshot
from scipy.stats import kendalltau

from neural_ot import keypoint_mask, solve_discrete
from otpr_sb3 import OTPR

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

gym.register_envs(gymnasium_robotics)


def replay_pairs(model: OTPR, idx: np.ndarray) -> tuple[th.Tensor, th.Tensor]:
    """Standardised observations and scaled actions of replay rows ``idx`` (one env)."""
    buf = model.replay_buffer
    obs = {k: th.as_tensor(v[idx, 0]) for k, v in buf.observations.items()}
    return model.policy.prepare_obs(obs), th.as_tensor(buf.actions[idx, 0]).float()


@th.no_grad()
def candidate_weights(model: OTPR, obs_n: th.Tensor, actions: th.Tensor) -> dict[str, np.ndarray]:
    """Per-state normalised weights of ``actions`` (one row of candidates per state) under each guidance."""
    policy = model.policy
    n, L, d = actions.shape
    s = obs_n.repeat_interleave(L, dim=0)
    a = actions.reshape(n * L, d)
    q = policy.critic.min(s, a).reshape(n, L)
    adv = q - policy.value(s).reshape(n, L)
    u = policy.guidance.state_potential(obs_n).repeat_interleave(L)  # as H uses it: learned, or c-transform over references
    z = (u + policy.guidance.v(a) - policy.guidance.pair_cost(s, a)).reshape(n, L)
    T = 1.0  # the Q and advantage guidances' default temperature
    out = {
        "H": th.relu(z),
        "exp(T Q / spread)": th.softmax(T * q / policy.scales.q_spread, dim=1),
        "exp(T A / spread)": th.softmax(T * adv / policy.scales.adv_spread, dim=1),
    }
    out["H"] = out["H"] / out["H"].sum(1, keepdim=True).clamp_min(1e-12)
    return {k: v.numpy() for k, v in out.items()} | {"Q": q.numpy()}


def figure_candidates(model: OTPR, rng: np.random.Generator, path: str, n_states: int = 4, L: int = 16) -> None:
    policy = model.policy
    idx = rng.integers(model.replay_buffer.size(), size=n_states)
    obs_n, replay_a = replay_pairs(model, idx)
    gen = th.Generator().manual_seed(0)
    noise = th.randn(n_states * L, policy.act_dim, generator=gen)
    with th.no_grad():
        cand = policy.sample_actions(obs_n.repeat_interleave(L, dim=0), noise).reshape(n_states, L, -1)
    cand = th.cat([cand, replay_a[:, None]], dim=1)
    w = candidate_weights(model, obs_n, cand)
    fig, axes = plt.subplots(1, n_states, figsize=(3.2 * n_states, 3.0), sharey=True)
    print("1. candidate weights (L = 16 actor candidates + the replay action), per state:")
    for k, ax in enumerate(axes):
        order = np.argsort(w["Q"][k])
        x = np.arange(L + 1)
        for j, (name, off) in enumerate((("H", -0.27), ("exp(T Q / spread)", 0.0), ("exp(T A / spread)", 0.27))):
            ax.bar(x + off, w[name][k][order], width=0.27, label=name, color=f"C{j}")
        replay_pos = int(np.where(order == L)[0][0])
        ax.set_xticks([])
        ax.set_xlabel("candidates, ordered by Q")
        ax.set_title(f"replay state {idx[k]} (replay action: bar {replay_pos + 1})", fontsize=8)
        nz = int((w["H"][k] > 0).sum())
        print(
            f"   state {idx[k]}: H > 0 on {nz}/{L + 1}; largest weight H {w['H'][k].max():.2f}, "
            f"Q {w['exp(T Q / spread)'][k].max():.2f}, A {w['exp(T A / spread)'][k].max():.2f}"
        )
    axes[0].set_ylabel("weight (normalised per state)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def minibatch(model: OTPR, rng: np.random.Generator, n: int, n_demo: int) -> dict[str, th.Tensor]:
    """``n`` replay pairs (the first ``n_demo`` rows of the replay are the demonstrations) and the keypoints."""
    size = model.replay_buffer.size()
    idx = np.concatenate([rng.choice(n_demo, n // 2, replace=False), rng.integers(n_demo, size, n - n // 2)])
    obs_n, actions = replay_pairs(model, idx)
    return {"obs": obs_n, "actions": actions, "is_demo": th.as_tensor(idx < n_demo)}


@th.no_grad()
def exact_plan(model: OTPR, batch: dict[str, th.Tensor], reg: float, masked: bool, weight: float) -> dict[str, th.Tensor]:
    """Exact plan of the minibatch problem (keypoints first when masked), as the run's dual would pose it."""
    policy = model.policy
    policy.guidance.relation_weight.fill_(weight)
    x, y = batch["obs"], batch["actions"]
    K = len(policy.guidance.keypoint_obs) if masked else 0
    if K:
        x, y = th.cat([policy.guidance.keypoint_obs, x]), th.cat([policy.guidance.keypoint_actions, y])
    C = policy.guidance.dual_cost.matrix(x, y).double()
    n = len(x)
    a = th.full((n,), 1.0 / n, dtype=th.float64)
    mask = th.as_tensor(keypoint_mask(n, n, np.c_[np.arange(K), np.arange(K)])) if K else None
    res = solve_discrete(a, a, C, reg, mask=mask, tol=1e-8)
    T = th.as_tensor(res.plan)
    return {"T": T[K:, K:] * n, "u": th.as_tensor(res.u)[K:], "v": th.as_tensor(res.v)[K:], "C": C[K:, K:]}


def near_own_action(T: th.Tensor, actions: th.Tensor, rows: th.Tensor, radius: float) -> float:
    """Share of the mass of ``rows`` that goes to actions within ``radius`` of the row's own action."""
    close = (th.cdist(actions.double(), actions.double()) <= radius).double()
    Tr = T[rows]
    return float((Tr * close[rows]).sum() / Tr.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", help="path prefix of <prefix>-model.zip and <prefix>-replay.pkl")
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--demo-transitions", type=int, default=5000, help="replay rows that are demonstrations")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", default="docs/_static")
    args = parser.parse_args()
    th.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    model = load_snapshot(args.snapshot, gym.make(args.env))
    policy = model.policy
    policy.guidance.mark_ready()
    reg, weight0 = policy.guidance.reg, float(policy.guidance.relation_weight)
    print(
        f"snapshot: {model.num_timesteps} env steps, reg {reg}, relation weight {weight0}, "
        f"K = {len(policy.guidance.keypoint_obs)}"
    )
    figure_candidates(model, rng, os.path.join(args.out, "what_h_candidates.png"))

    batch = minibatch(model, rng, args.batch, args.demo_transitions)
    demo_rows = th.nonzero(batch["is_demo"]).reshape(-1)
    radius = float(th.cdist(batch["actions"], batch["actions"]).median()) / 4
    print(f"2. share of the expert states' mass on actions within {radius:.2f} of their own action (exact plans):")
    weights = [0.0, 0.1, 0.3, 0.5, 1.0]
    shares = {"masked": [], "unmasked": []}
    for w in weights:
        for masked in (True, False):
            sol = exact_plan(model, batch, reg, masked, w)
            shares["masked" if masked else "unmasked"].append(near_own_action(sol["T"], batch["actions"], demo_rows, radius))
        print(f"   relation weight {w}: masked {shares['masked'][-1]:.3f}, unmasked {shares['unmasked'][-1]:.3f}")
    policy.guidance.relation_weight.fill_(weight0)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, vals in shares.items():
        ax.plot(weights, vals, marker="o", label=name)
    ax.set_xlabel("relation weight w")
    ax.set_ylabel("expert-state mass near own action")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "what_h_mask.png"), dpi=110)
    plt.close(fig)

    print("3. sparsity of H on the exact minibatch plan as eps varies:")
    regs = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    nonzero, per_row = [], []
    for eps in regs:
        T = exact_plan(model, batch, eps, True, weight0)["T"]
        nonzero.append(float((T > 0).double().mean()))
        per_row.append(float((T > 0).double().sum(1).median()))
        print(f"   eps {eps}: H > 0 on {nonzero[-1]:.3f} of pairs, median {per_row[-1]:.0f} actions per state")
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.semilogx(regs, nonzero, marker="o")
    ax.axvline(reg, color="0.5", ls="--", label=f"reg of the run ({reg})")
    ax.set_xlabel("eps (reg)")
    ax.set_ylabel("share of pairs with H > 0")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "what_h_sparsity.png"), dpi=110)
    plt.close(fig)

    print("4. H ranking vs Q ranking within a state (exact plan at the run's eps):")
    sol = exact_plan(model, batch, reg, True, weight0)
    T, v, C = sol["T"], sol["v"], sol["C"]
    taus, v_spreads = [], []
    for i in range(len(T)):
        support = th.nonzero(T[i] > 0).reshape(-1)
        if len(support) < 3:
            continue
        taus.append(kendalltau(T[i, support].numpy(), -C[i, support].numpy()).statistic)
        v_spreads.append(float(v[support].std() / C[i, support].std().clamp_min(1e-12)))
    taus_a, spreads_a = np.array(taus), np.array(v_spreads)
    print(
        f"   Kendall tau(H, Q) over each state's support: median {np.median(taus_a):.2f} "
        f"({(taus_a > 0.99).mean():.2f} of states identical); std v / std c on the support: median {np.median(spreads_a):.2f}"
    )
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.scatter(spreads_a, taus_a, s=8)
    ax.set_xlabel("std of v / std of cost, over the state's support")
    ax.set_ylabel("Kendall tau(H, Q) within the state")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "what_h_ranking.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
