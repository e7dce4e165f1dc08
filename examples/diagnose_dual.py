"""How well does a trained OTPR's dual solve its OT problem, and what does H do at a few Pendulum states?

Run on a checkpoint written by ``examples/from_scratch.py run`` (model and replay buffer)::

    python examples/diagnose_dual.py outputs/from_scratch/Pendulum-v1-otpr-s1
    python examples/diagnose_dual.py outputs/from_scratch/Pendulum-v1-otpr-s1 --refit 1200

Prints :meth:`otpr_sb3.OTPR.dual_diagnostics` on held-out replay minibatches, then Q and H over an action
grid at fixed states. With ``--refit N`` it continues the dual alone for ``N`` updates on the frozen critic,
with the gradient and the exact-minibatch method, and prints the diagnostics along the way.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np
import torch as th

from otpr_sb3 import OTPR

STATES = [(np.pi, 0.0), (np.pi, 1.0), (np.pi / 2, 3.0), (np.pi / 2, -3.0), (0.3, 0.5)]  # (theta, theta_dot)


def load(run_dir: str, **kwargs) -> OTPR:
    """The checkpoint of ``run_dir`` with its replay buffer."""
    model = OTPR.load(os.path.join(run_dir, "last.zip"), env=gym.make("Pendulum-v1"), **kwargs)
    model.load_replay_buffer(os.path.join(run_dir, "last_replay_buffer.pkl"))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--batch", type=int, default=256, help="held-out minibatch size")
    parser.add_argument("--refit", type=int, default=0, help="dual-only updates on the frozen critic (0: none)")
    args = parser.parse_args()
    th.set_num_threads(1)
    model = load(args.run_dir)
    policy = model.policy
    print(
        f"{model.num_timesteps} env steps, {model.dual_updates} dual updates, cost scale {float(policy.scales.adv_spread):.3g}"
    )
    print("held-out:", {k: round(v, 3) for k, v in model.dual_diagnostics(args.batch).items()})
    grid = th.linspace(-1, 1, 9)[:, None]
    policy.guidance.mark_ready()
    with th.no_grad():
        for theta, theta_dot in STATES:
            obs = policy.prepare_obs(th.tensor([[np.cos(theta), np.sin(theta), theta_dot]], dtype=th.float32))
            q = policy.critic.min(obs.repeat(9, 1), grid)
            _, h = policy.candidate_scores(obs.repeat(9, 1), grid)
            print(
                f"theta {theta:.2f} theta_dot {theta_dot:+.1f} | Q(a = -1 .. 1) {np.round(q.numpy(), 1)} | "
                f"H {np.round(h.numpy(), 2)}"
            )
    for method in ("gradient", "exact") if args.refit else ():
        model = load(args.run_dir, dual_kwargs={"method": method})
        start, out = time.perf_counter(), []
        for k in range(1, args.refit + 1):
            model._guidance_update()
            if k in (1, args.refit // 4, args.refit // 2, args.refit):
                d = model.dual_diagnostics(args.batch)
                out.append(f"{k}: error {d['marginal_error']:.2f} gap {d['dual_gap']:.3f}")
        ms = (time.perf_counter() - start) / args.refit * 1e3
        print(f"{method}, batch {model.dual_kwargs['batch_size']}: {ms:.1f} ms/update | " + " | ".join(out))


if __name__ == "__main__":
    main()
