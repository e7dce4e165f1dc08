"""Diffusion-QL-style guidance: score matching plus the Q-gradient through the DDIM chain (Wang et al., 2023)."""

from __future__ import annotations

from typing import Any

import torch as th

from otpr_sb3.guidance.base import PolicyView
from otpr_sb3.guidance.weights import QGuidance


class DQLGuidance(QGuidance):
    """Diffusion-QL-style: Q selection of candidates, and the Q-gradient through the DDIM chain in the actor's loss.

    Candidates are selected as :class:`~otpr_sb3.guidance.weights.QGuidance` does; the actor's loss is the unweighted
    score matching on replay pairs minus ``eta * mean Q(s, a_theta(s)) / mean |Q|``, with ``a_theta`` sampled by the
    K-step DDIM chain with its graph kept. The Q term starts when the guidance is ready (after ``dual_start``).

    Parameters
    ----------
    obs_dim, act_dim : int
    temperature : float
        Of the candidate selection (as ``"q"``).
    eta : float
        Weight of the Q term (Diffusion-QL's ``eta``); 0 leaves plain behaviour cloning on the replay.
    """

    name = "dql"
    owns_actor_update = True

    def __init__(self, obs_dim: int, act_dim: int, temperature: float = 1.0, eta: float = 1.0) -> None:
        super().__init__(obs_dim, act_dim, temperature)
        if not eta >= 0:
            raise ValueError(f"`eta` must be >= 0, got {eta!r}")
        self.eta = float(eta)

    def constructor_kwargs(self) -> dict[str, Any]:  # noqa: D102
        return {"temperature": self.temperature, "eta": self.eta}

    def actor_loss(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, normalize: bool, n_reference: int | None = None
    ) -> tuple[th.Tensor | None, dict[str, float]]:
        """Score matching minus ``eta`` times the normalised Q of chain samples.

        The critics' stray gradients are cleared by their own ``zero_grad`` before use.
        """
        loss = bc_loss = policy.schedule.epsilon_loss(policy.actor, actions, obs_n)
        logs = {"actor_bc_loss": float(bc_loss.detach())}
        if bool(self.ready) and self.eta > 0:
            noise = th.randn_like(actions)
            sampled = policy.schedule.ddim_sample(policy.actor, obs_n, noise, policy.ddim_steps, requires_grad=True)
            q = policy.critic.min(obs_n, sampled)
            q_loss = -q.mean() / q.detach().abs().mean().clamp_min(1e-8)
            loss = bc_loss + self.eta * q_loss
            logs["actor_q_loss"] = float(q_loss.detach())
        return loss, {"actor_loss": float(loss.detach()), **logs}
