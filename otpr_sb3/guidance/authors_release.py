"""OTPR as the authors' public code runs it: one more arm of the claims study (docs/claims.rst).

Facts read from the authors' repository (issue 25), which differ from the paper:

- in masked mode, the potentials are trained on the keypoint relation cost alone (the mixing weight of the relation
  term defaults to 1), so this guidance's ``relation_weight`` defaults to 1;
- ``-Q`` enters only when H ranks candidates for action selection: the score is ``u(s) + v(a) - c_Q(s, a)``, with
  the potentials of the relation-cost dual and the critic cost;
- the actor loss is the plain diffusion loss on replay (the H-weighted loss is commented out);
- 10 candidates, and potentials retrained at every iteration (1,000 steps at lr 1e-5, batch 128): the harness's
  ``otpr-authors`` method sets the candidates and a budgeted version of the dual's schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th

from otpr_sb3.guidance.base import PolicyView, weighted_score_matching
from otpr_sb3.guidance.compatibility import CompatibilityGuidance


class AuthorsReleaseGuidance(CompatibilityGuidance):
    """H of the authors' release: potentials from the relation-cost dual, candidates ranked with ``-Q``.

    Parameters are those of :class:`CompatibilityGuidance`; ``relation_weight`` defaults to 1 (the dual's cost is the
    relation cost alone once keypoints exist).
    """

    name = "authors"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        policy: PolicyView,
        potential_hidden: Sequence[int] = (128, 128),
        cost: str = "advantage",
        relation_rho: float = 0.1,
        reg: float = 0.1,
        relation_weight: float = 1.0,
        relation_scale: str = "none",
    ) -> None:
        super().__init__(obs_dim, act_dim, policy, potential_hidden, cost, relation_rho, reg, relation_weight, relation_scale)

    @th.no_grad()
    def grouped_scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """``z = u(s_i) + v(a_ij) - c_Q(s_i, a_ij)`` and ``z_+ / (2 reg)``: the dual's potentials, the critic's cost."""
        if actions.ndim != 3 or actions.shape[0] != obs_n.shape[0] or actions.shape[2] != self.act_dim:
            raise ValueError(f"`actions` must have shape ({obs_n.shape[0]}, m, {self.act_dim}), got {tuple(actions.shape)}")
        n, m = actions.shape[0], actions.shape[1]
        u = self.state_potential(obs_n, n_reference)
        v = self.v(actions.reshape(n * m, self.act_dim)).reshape(n, m)
        z = u[:, None] + v - self.dual_cost.critic_grouped(obs_n, actions)
        return z, th.relu(z) / (2.0 * self.reg)

    def actor_loss(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, normalize: bool, n_reference: int | None = None
    ) -> tuple[th.Tensor | None, dict[str, Any]]:
        """Return the plain diffusion loss on replay pairs (every pair weighted 1), and what to log."""
        return weighted_score_matching(policy, obs_n, actions, th.ones(len(actions), device=actions.device), normalize)
