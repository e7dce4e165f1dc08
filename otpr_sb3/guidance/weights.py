"""Guidances that weight actions by the critic alone: exp(Q), exp(advantage) and IDQL's expectile weights."""

from __future__ import annotations

from typing import Any

import torch as th

from otpr_sb3.guidance.base import Guidance, PolicyView, expectile_weights, weighted_score_matching


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive, got {temperature!r}")
    return float(temperature)


class QGuidance(Guidance):
    """Weights ``exp(temperature * Q / spread(Q))``, shifted by their maximum over the batch for stability.

    Parameters
    ----------
    obs_dim, act_dim : int
    temperature : float
        Inverse temperature; ``spread(Q)`` is the running standard deviation of ``Q`` over critic batches.
    """

    name = "q"

    def __init__(self, obs_dim: int, act_dim: int, temperature: float = 1.0) -> None:
        super().__init__(obs_dim, act_dim)
        self.temperature = _check_temperature(temperature)

    def constructor_kwargs(self) -> dict[str, Any]:  # noqa: D102
        return {"temperature": self.temperature}

    def scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:  # noqa: D102
        """``temperature * Q / spread(Q)`` and its exponential."""
        score = self.temperature * policy.critic.min(obs_n, actions) / policy.scales.q_spread
        return score, th.exp(score - score.max())


class AdvantageGuidance(QGuidance):
    """Weights ``exp(temperature * (Q - V) / spread(Q - V))`` (AWR-style), shifted by their batch maximum."""

    name = "advantage"

    def scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:  # noqa: D102
        """``temperature * (Q - V) / spread(Q - V)`` and its exponential."""
        q = policy.critic.min(obs_n, actions)
        score = self.temperature * (q - policy.value(obs_n)) / policy.scales.adv_spread
        return score, th.exp(score - score.max())


class ExpectileGuidance(Guidance):
    """IDQL-style: expectile weights for the candidates, unweighted replay targets for the actor.

    Candidates are weighted by ``|tau - 1(Q < V)|`` at all times; the actor fits the replay pairs unweighted (the
    selection does the rest).
    """

    name = "expectile"

    def scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:  # noqa: D102
        """Return the advantage and the expectile weights."""
        return expectile_weights(policy, obs_n, actions)

    def actor_loss(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, normalize: bool, n_reference: int | None = None
    ) -> tuple[th.Tensor | None, dict[str, float]]:
        """Unweighted score matching on the replay pairs."""
        w = th.ones(len(actions), device=actions.device)
        return weighted_score_matching(policy, obs_n, actions, w, normalize)
