r"""The dual's ground cost between states and actions, built from the critics of an OTPR policy.

The paper's cost is :math:`c(s, a) = -Q(s, a)` (Eq. 8). A function of the state alone added to the cost
leaves the OT plan unchanged (it is absorbed by :math:`u(s)`), so the advantage cost
:math:`-(Q(s, a) - V(s))` gives the same coupling while sparing :math:`u` from re-learning :math:`V`.
Either is divided by a running scale so that ``reg`` does not depend on the reward scale: the spread of the advantage
for ``"advantage"``, ``mean |Q|`` for ``"q"`` (where reward offsets then change the effective ``reg``).
With keypoints and a positive relation weight the cost is mixed with the keypoint relation cost (Eq. 13).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch as th

from neural_ot import CostFn, KeypointRelationCost

if TYPE_CHECKING:
    from otpr_sb3.policies import OTPRPolicy

COSTS = ("advantage", "q")


class CriticCost(CostFn):
    """``c(s, a)`` of an :class:`~otpr_sb3.policies.OTPRPolicy`, as a :class:`neural_ot.CostFn`.

    Parameters
    ----------
    policy : OTPRPolicy
        Supplies the critics, the value function, the scale, the relation weight and the keypoints; the
        cost always reflects their current state.
    """

    def __init__(self, policy: OTPRPolicy) -> None:
        super().__init__()
        self.policy = policy
        self._relation: KeypointRelationCost | None = None
        self._relation_key: tuple[int, int] | None = None

    def _relation_cost(self) -> KeypointRelationCost:
        p = self.policy
        key = (p.keypoint_obs.data_ptr(), p.keypoint_obs._version)
        if self._relation is None or key != self._relation_key:
            self._relation = KeypointRelationCost(p.keypoint_obs, p.keypoint_actions, rho=p.relation_rho)
            self._relation_key = key
        return self._relation

    def _mix(self, value: th.Tensor, relation: Callable[[KeypointRelationCost], th.Tensor]) -> th.Tensor:
        """``-value / cost_scale``, mixed with the relation cost when it is in use."""
        p = self.policy
        cost = -value / p.cost_scale
        if p.uses_relation_cost:
            w = p.relation_weight
            cost = (1.0 - w) * cost + w * relation(self._relation_cost())
        return cost

    @th.no_grad()
    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Cost matrix ``(n, m)``: the critics on all pairs, ``V`` on the ``n`` states only."""
        p = self.policy
        q = p.critic.pairwise_min(x, y)
        if p.cost == "advantage":
            q = q - p.value(x)[:, None]
        return self._mix(q, lambda g: g.pairwise(x, y))

    @th.no_grad()
    def grouped(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Costs ``c(x_i, y_ij)`` of each state with its own actions ``y`` ``(n, m, act_dim)``: shape ``(n, m)``.

        Equal to :meth:`paired` on the ``n * m`` pairs; the state-only parts (``V``, the first critic layer) are
        computed once per state.
        """
        p = self.policy
        n, m = y.shape[0], y.shape[1]
        q = p.critic.grouped_min(x, y)
        if p.cost == "advantage":
            q = q - p.value(x)[:, None]
        return self._mix(q, lambda g: g.paired(x.repeat_interleave(m, dim=0), y.reshape(n * m, -1)).reshape(n, m))

    @th.no_grad()
    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Costs ``c(s_i, a_i)`` of aligned pairs, shape ``(n,)``."""
        p = self.policy
        q = p.critic.grouped_min(x, y.unsqueeze(1)).squeeze(1)  # the pairs' precision, as in the matrices
        if p.cost == "advantage":
            q = q - p.value(x)
        return self._mix(q, lambda g: g.paired(x, y))
