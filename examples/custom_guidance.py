"""Adding a guidance to OTPR: keep the best k candidates by advantage, with equal weights.

A guidance scores ``(state, action)`` pairs; OTPR uses the weights to pick among the actor's candidates during
collection and, by default, to weight the actor's replay targets. Register it and name it in ``policy_kwargs``::

    python examples/custom_guidance.py      # 2,000 steps on Pendulum-v1, then a deterministic evaluation
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch as th

from otpr_sb3 import OTPR
from otpr_sb3.guidance import Guidance, PolicyView, register_guidance


@register_guidance
class TopKAdvantage(Guidance):
    """Weight 1 for the ``k`` actions of largest advantage ``Q - V`` in each group of candidates, 0 for the rest."""

    name = "top-k-advantage"

    def __init__(self, obs_dim: int, act_dim: int, k: int = 2) -> None:
        super().__init__(obs_dim, act_dim)
        if k < 1:
            raise ValueError(f"`k` must be >= 1, got {k!r}")
        self.k = int(k)

    def scores(self, policy: PolicyView, obs_n, actions, n_reference=None):  # aligned pairs: every pair keeps weight 1
        adv = policy.critic.min(obs_n, actions) - policy.value(obs_n)
        return adv, th.ones_like(adv)

    def grouped_scores(self, policy: PolicyView, obs_n, actions, n_reference=None):  # (n, m) candidates per state
        n, m = actions.shape[:2]
        adv, _ = self.scores(policy, obs_n.repeat_interleave(m, dim=0), actions.reshape(n * m, -1))
        adv = adv.reshape(n, m)
        kth = adv.topk(min(self.k, m), dim=1).values[:, -1:]
        return adv, (adv >= kth).to(adv.dtype)

    def constructor_kwargs(self):  # saved with the policy, so a loaded model rebuilds the same guidance
        return {"k": self.k}


def main() -> None:
    env = gym.make("Pendulum-v1")
    model = OTPR(
        "MlpPolicy", env, seed=0, dual_start=100, policy_kwargs={"guidance": "top-k-advantage", "guidance_kwargs": {"k": 3}}
    )
    model.learn(2_000, progress_bar=True)
    obs, _ = env.reset(seed=1)
    total = 0.0
    for _ in range(200):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, *_ = env.step(action)
        total += float(reward)
    print(f"return of one deterministic episode after 2,000 steps: {total:.0f} (random: about -1200)")
    print(
        "weights of 6 candidates at one state:",
        model.policy.guidance.grouped_weights(
            model.policy,
            model.policy.prepare_obs(th.as_tensor(obs[None])),
            th.as_tensor(np.linspace(-1, 1, 6, dtype=np.float32)).reshape(1, 6, 1),
        )[1].tolist(),
    )


if __name__ == "__main__":
    main()
