r"""OTPR's guidance: the compatibility function H of the L2-regularised OT dual between states and actions.

The component owns everything H needs: the potentials ``u(s)`` and ``v(a)``, ``reg``, the dual's cost (the critic
cost mixed with the keypoint relation cost, :class:`CriticCost`), the keypoints, and the reference actions over
which ``u(s)`` may be computed as the c-transform of ``v``. It is a module of the policy, so a policy saved and
loaded on its own acts as inside the algorithm. Its training (the dual solver, its updates and diagnostics) is
:class:`otpr_sb3.guidance.dual_training.DualTrainer`, built by :meth:`CompatibilityGuidance.setup_training`.

The cost: the paper's is :math:`c(s, a) = -Q(s, a)` (Eq. 8). A function of the state alone added to the cost leaves
the plan unchanged (it is absorbed by :math:`u(s)`), so the advantage cost :math:`-(Q - V)` gives the same coupling
while sparing :math:`u` from re-learning :math:`V`. Either is divided by a running scale so that ``reg`` does not
depend on the reward scale: the spread of the advantage for ``"advantage"``, ``mean |Q|`` for ``"q"``. With keypoints
and a positive relation weight it is mixed with the keypoint relation cost (Eq. 13).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch as th

from neural_ot import CostFn, KeypointRelationCost, MLPPotential, c_transform
from otpr_sb3.guidance.base import Guidance, PolicyView, UpdateContext
from otpr_sb3.guidance.dual_training import DualTrainer

COSTS = ("advantage", "q")
#: How the relation cost enters the mix: as it is (Eq. 13; at most ln 2) or rescaled to the critic cost's spread over
#: replay pairs, so that ``relation_weight`` is its share of the total.
RELATION_SCALES = ("none", "spread")


class CriticCost(CostFn):
    """The dual's ground cost ``c(s, a)`` from the policy's critics, as a :class:`neural_ot.CostFn`.

    Parameters
    ----------
    policy : PolicyView
        Supplies the critics, ``V`` and the running scales; the cost always reflects their current state.
    guidance : CompatibilityGuidance
        Supplies the kind of cost, the relation weight and the keypoints.
    """

    def __init__(self, policy: PolicyView, guidance: CompatibilityGuidance) -> None:
        super().__init__()
        self.policy, self.guidance = policy, guidance

    def _critic_value(self, x: th.Tensor, q: th.Tensor) -> th.Tensor:
        if self.guidance.cost == "advantage":
            v = self.policy.value(x)
            return q - (v[:, None] if q.ndim == 2 else v)
        return q

    def _scaled(self, value: th.Tensor) -> th.Tensor:
        """Return the critic cost: ``-value`` over its running scale."""
        g, scales = self.guidance, self.policy.scales
        return -value / (scales.adv_spread if g.cost == "advantage" else scales.q_abs_mean)

    def _mix(self, value: Callable[[], th.Tensor], relation: Callable[[KeypointRelationCost], th.Tensor]) -> th.Tensor:
        """Return the critic cost (``value()``), mixed with the relation cost when it is in use.

        At relation weight 1 the critics are not evaluated: their weight is 0, and on all pairs of a dual batch
        they are most of the cost's arithmetic (the authors' release runs there, 10x slower before).
        """
        g = self.guidance
        if not g.uses_relation_cost:
            return self._scaled(value())
        w = g.relation_weight
        rel = relation(g.relation_cost())
        if g.relation_scale == "spread":  # the critic cost's spread once measured
            spread = g.relation_spread
            rel = rel / th.where(spread > 0, spread, th.ones_like(spread))
        if w == 1.0:
            return rel
        return (1.0 - w) * self._scaled(value()) + w * rel

    @th.no_grad()
    def critic_grouped(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Return the critic cost alone of each state with its own actions ``y`` ``(n, m, act_dim)``: ``(n, m)``."""
        return self._scaled(self._critic_value(x, self.policy.critic.grouped_min(x, y)))

    @th.no_grad()
    def critic_pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Return the critic cost alone (no relation cost) on all pairs, ``(n, m)``."""
        return self._scaled(self._critic_value(x, self.policy.critic.pairwise_min(x, y)))

    @th.no_grad()
    def pairwise(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Cost matrix ``(n, m)``: the critics on all pairs, ``V`` on the ``n`` states only."""
        return self._mix(lambda: self._critic_value(x, self.policy.critic.pairwise_min(x, y)), lambda g: g.pairwise(x, y))

    @th.no_grad()
    def grouped(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Costs ``c(x_i, y_ij)`` of each state with its own actions ``y`` ``(n, m, act_dim)``: shape ``(n, m)``.

        Equal to :meth:`paired` on the ``n * m`` pairs; the state parts (``V``, the first critic layer) are computed
        once per state.
        """
        n, m = y.shape[0], y.shape[1]
        return self._mix(
            lambda: self._critic_value(x, self.policy.critic.grouped_min(x, y)),
            lambda g: g.paired(x.repeat_interleave(m, dim=0), y.reshape(n * m, -1)).reshape(n, m),
        )

    @th.no_grad()
    def paired(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """Costs ``c(s_i, a_i)`` of aligned pairs, shape ``(n,)`` (in the pairs' precision, as the matrices)."""
        return self._mix(
            lambda: self._critic_value(x, self.policy.critic.grouped_min(x, y.unsqueeze(1)).squeeze(1)),
            lambda g: g.paired(x, y),
        )


class CompatibilityGuidance(Guidance):
    r"""H guidance (OTPR): ``z = u(s) + v(a) - c(s, a)`` and weights ``H = z_+ / (2 reg)`` (Eq. 15).

    Parameters
    ----------
    obs_dim, act_dim : int
    policy : PolicyView
        The policy whose critics define the cost.
    potential_hidden : sequence of int
        Hidden sizes of the potentials ``u(s)`` and ``v(a)`` (the paper: a 2-layer MLP).
    cost : {"advantage", "q"}
        ``-(Q - V) / spread(Q - V)`` (default; the same plan as ``-Q``) or the paper's ``-Q / mean|Q|``.
    relation_rho : float
        Softmax temperature of the keypoint relation vectors (KPG's 0.1).
    reg : float
        eps of the L2-regularised dual, on the normalised cost. OTPR sets it (its ``reg``).
    relation_weight : float
        Weight of the keypoint relation cost once keypoints exist (Eq. 13): at 0 the mask cannot change the coupling
        of the replay pairs, at 1 Q leaves the coupling.
    relation_scale : {"none", "spread"}
        The relation cost as it is (the paper's; at most ln 2 against a unit-spread critic cost, so a small weight
        leaves it inert), or rescaled to the critic cost's spread over replay pairs (``relation_spread``, the ratio of
        the two spreads, updated with every dual update), which makes ``relation_weight`` the relation cost's share.
    """

    name = "compatibility"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        policy: PolicyView,
        potential_hidden: Sequence[int] = (128, 128),
        cost: str = "advantage",
        relation_rho: float = 0.1,
        reg: float = 0.1,
        relation_weight: float = 0.1,
        relation_scale: str = "none",
    ) -> None:
        if cost not in COSTS:
            raise ValueError(f"`cost` must be one of {COSTS}, got {cost!r}")
        if relation_scale not in RELATION_SCALES:
            raise ValueError(f"`relation_scale` must be one of {RELATION_SCALES}, got {relation_scale!r}")
        if isinstance(potential_hidden, str) or not list(potential_hidden) or any(int(h) < 1 for h in potential_hidden):
            raise ValueError(f"`potential_hidden` must be a non-empty sequence of layer sizes, got {potential_hidden!r}")
        if not reg > 0:
            raise ValueError(f"`reg` must be positive, got {reg!r}")
        if not 0.0 <= relation_weight <= 1.0:
            raise ValueError(f"`relation_weight` must be in [0, 1], got {relation_weight!r}")
        if not relation_rho > 0:
            raise ValueError(f"`relation_rho` must be positive, got {relation_rho!r}")
        super().__init__(obs_dim, act_dim)
        self.potential_hidden = tuple(int(h) for h in potential_hidden)
        self.u = MLPPotential(obs_dim, potential_hidden)
        self.v = MLPPotential(act_dim, potential_hidden)
        self.cost, self.relation_rho = cost, float(relation_rho)
        self.reg, self.relation_weight = float(reg), float(relation_weight)
        self.relation_scale = relation_scale
        self.keypoint_version = 0  # counts keypoint changes, so the trainer knows when to set its problem up again
        self.keypoint_obs: th.Tensor
        self.keypoint_actions: th.Tensor
        self.reference_actions: th.Tensor
        self.reference_mass: th.Tensor
        # Keypoints (mask and relation cost) and the reference actions of u(s); resized when loaded.
        self.register_buffer("keypoint_obs", th.zeros(0, obs_dim))
        self.register_buffer("keypoint_actions", th.zeros(0, act_dim))
        self.register_buffer("reference_actions", th.zeros(0, act_dim))
        self.register_buffer("reference_mass", th.ones(()))
        self.relation_spread: th.Tensor
        self.register_buffer("relation_spread", th.zeros(()))  # 0: not measured since the keypoints changed
        self.dual_cost = CriticCost(policy, self)
        self._relation: KeypointRelationCost | None = None
        self.trainer: DualTrainer | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The trainer samples the algorithm's replay buffer: a pickled or copied policy leaves it behind.
        state = dict(super().__getstate__())
        state["trainer"] = None
        return state

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The keypoint and reference buffers change size: take the saved shape before copying.
        for name in ("keypoint_obs", "keypoint_actions", "reference_actions"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, th.empty(saved.shape, dtype=saved.dtype, device=getattr(self, name).device))
        self._relation = None
        self.keypoint_version += 1
        # A state saved before `relation_spread` existed: not measured yet (the next dual update measures it).
        state_dict.setdefault(prefix + "relation_spread", th.zeros((), device=self.relation_spread.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- settings and keypoints -------------------------------------------------------------------------

    def configure(self, reg: float | None = None, relation_weight: float | None = None, **settings: Any) -> None:
        """Set ``reg`` and the relation weight (the dual's solver, if built, follows ``reg``)."""
        super().configure(**settings)
        if reg is not None and float(reg) != self.reg:
            self.reg = float(reg)
            if self.trainer is not None:
                self.trainer.rebuild()
        if relation_weight is not None:
            self.relation_weight = float(relation_weight)

    def constructor_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this guidance as it is now (saved with the policy)."""
        return {
            "potential_hidden": self.potential_hidden,
            "cost": self.cost,
            "relation_rho": self.relation_rho,
            "reg": self.reg,
            "relation_weight": self.relation_weight,
            "relation_scale": self.relation_scale,
        }

    @th.no_grad()
    def set_keypoints(self, obs_n: th.Tensor, actions: th.Tensor) -> None:
        """Set the keypoints: prepared observations and scaled actions of matched expert pairs (empty: none).

        They are the matched pairs of the keypoint mask and the anchors of the relation cost.
        """
        if obs_n.shape[0] != actions.shape[0]:
            raise ValueError(f"`obs_n` and `actions` must have as many rows, got {obs_n.shape[0]} and {actions.shape[0]}")
        device = self.reference_mass.device
        self.keypoint_obs = obs_n.detach().to(device, th.float32).reshape(-1, self.obs_dim).clone()
        self.keypoint_actions = actions.detach().to(device, th.float32).reshape(-1, self.act_dim).clone()
        self._relation = None
        self.relation_spread.zero_()
        self.keypoint_version += 1

    def relation_cost(self) -> KeypointRelationCost:
        """Return the keypoint relation cost of the current keypoints."""
        if self._relation is None:
            self._relation = KeypointRelationCost(self.keypoint_obs, self.keypoint_actions, rho=self.relation_rho)
        return self._relation

    @th.no_grad()
    def update_relation_spread(self, obs_n: th.Tensor, actions: th.Tensor, rate: float = 0.01) -> None:
        """Move ``relation_spread`` towards std(relation cost) / std(critic cost) over all pairs of these states and actions.

        Divided by it, the relation cost has the critic cost's spread on the pairs the dual sees. The first measurement
        after the keypoints change is taken as it is; later ones by an EMA of rate ``rate`` (no host synchronisation;
        the state is the saved buffer, so a resumed run goes on exactly).
        """
        rel = self.relation_cost().pairwise(obs_n, actions).float().std()
        crit = self.dual_cost.critic_pairwise(obs_n, actions).float().std()
        spread = (rel / crit.clamp_min(1e-12)).clamp_min(1e-6)
        old = self.relation_spread
        self.relation_spread.copy_(th.where(old > 0, old + rate * (spread - old), spread))

    @property
    def uses_relation_cost(self) -> bool:
        """True when the relation cost is mixed in (positive weight and keypoints present)."""
        return self.relation_weight > 0 and self.keypoint_obs.shape[0] > 0

    def pair_cost(self, obs_n: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Evaluate the dual's cost ``c(s_i, a_i)`` on aligned pairs."""
        return self.dual_cost.paired(obs_n, actions)

    # ---- u(s) -------------------------------------------------------------------------------------------

    @th.no_grad()
    def set_reference_actions(self, actions: th.Tensor, mass: float = 1.0) -> None:
        """Compute ``u(s)`` as the c-transform of ``v`` over these scaled actions, carrying ``mass`` in all.

        ``mass`` is the share of the action measure that regular states can reach (below 1 under the keypoint mask,
        whose keypoint columns belong to their own keypoint rows). Empty ``actions`` switch back to the learned ``u``.
        """
        self.reference_actions = actions.detach().to(self.reference_mass.device, th.float32).reshape(-1, self.act_dim).clone()
        self.reference_mass.fill_(float(mass))

    @th.no_grad()
    def state_potential(self, obs_n: th.Tensor, n_reference: int | None = None) -> th.Tensor:
        """``u(s)``: the learned network, or the smooth c-transform of ``v`` over the reference actions.

        The c-transform gives each state exactly its mass in the plan against that action sample
        (:func:`neural_ot.c_transform`); it costs the dual's cost on ``len(obs_n) x M`` pairs. ``n_reference`` uses
        only the first ``n_reference`` reference actions (0: the learned network).
        """
        ref = self._references(n_reference)
        if ref.shape[0] == 0:
            return self.u(obs_n)
        return self._reference_potential(ref, self.dual_cost.matrix(obs_n, ref))

    def _references(self, n_reference: int | None) -> th.Tensor:
        return self.reference_actions if n_reference is None else self.reference_actions[:n_reference]

    def _reference_potential(self, ref: th.Tensor, C_ref: th.Tensor) -> th.Tensor:
        M = ref.shape[0]
        b = (self.reference_mass / M).to(ref.device).expand(M)
        return c_transform(self.v(ref), C_ref, self.reg, b=b)

    # ---- scoring ----------------------------------------------------------------------------------------

    @th.no_grad()
    def grouped_scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """``z = u(s_i) + v(a_ij) - c(s_i, a_ij)`` and ``H = z_+ / (2 reg)`` of each state with its own actions.

        Parameters
        ----------
        policy : PolicyView
        obs_n : torch.Tensor of shape (n, obs_dim)
        actions : torch.Tensor of shape (n, m, act_dim)
        n_reference : int, optional
            Reference actions of ``u(s)`` (:meth:`state_potential`); all by default, 0 for the learned ``u``.

        Returns
        -------
        z, H : torch.Tensor of shape (n, m)

        Notes
        -----
        With reference actions the critics make one pass per state over its ``M`` reference actions and its ``m``
        actions, so ``V(s)`` and the state part of the first critic layer are computed once.
        """
        if actions.ndim != 3 or actions.shape[0] != obs_n.shape[0] or actions.shape[2] != self.act_dim:
            raise ValueError(f"`actions` must have shape ({obs_n.shape[0]}, m, {self.act_dim}), got {tuple(actions.shape)}")
        n, m = actions.shape[0], actions.shape[1]
        ref = self._references(n_reference)
        M = ref.shape[0]
        if M:
            C = self.dual_cost.grouped(obs_n, th.cat([ref.expand(n, M, self.act_dim), actions.to(ref.dtype)], dim=1))
            u = self._reference_potential(ref, C[:, :M])
            C = C[:, M:]
        else:
            C, u = self.dual_cost.grouped(obs_n, actions), self.u(obs_n)
        z = u[:, None] + self.v(actions.reshape(n * m, self.act_dim)).reshape(n, m) - C
        return z, th.relu(z) / (2.0 * self.reg)

    def scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`grouped_scores` of one action per state."""
        z, w = self.grouped_scores(policy, obs_n, actions.unsqueeze(1), n_reference)
        return z.squeeze(1), w.squeeze(1)

    # ---- training ---------------------------------------------------------------------------------------

    def setup_training(self, **settings: Any) -> None:
        """Build the dual's :class:`~otpr_sb3.guidance.dual_training.DualTrainer` with these settings.

        A trainer built before passes on its solver's state (optimiser, minibatch stream); without reference actions
        ``u(s)`` is the learned network again.
        """
        state = None if self.trainer is None else self.trainer.solver.state_dict()
        self.trainer = DualTrainer(self, **settings)
        if state is not None:
            self.trainer.load_solver_state(state)
        if not self.trainer.reference_actions:
            self.set_reference_actions(self.reference_actions[:0])

    def log_values(self, policy: PolicyView) -> dict[str, Any]:
        """Log the cost's running scale (a 0-dim tensor)."""
        scales = policy.scales
        return {"cost_scale": scales.adv_spread if self.cost == "advantage" else scales.q_abs_mean}

    def _trained(self) -> DualTrainer:
        if self.trainer is None:
            raise RuntimeError("the dual is not set up for training: call `setup_training` first")
        return self.trainer

    def update(self, context: UpdateContext) -> dict[str, Any]:
        """One dual update (:meth:`DualTrainer.update <otpr_sb3.guidance.dual_training.DualTrainer.update>`)."""
        return self._trained().update(context)

    def diagnostics(self, context: UpdateContext, batch_size: int) -> dict[str, float]:
        """Held-out dual diagnostics (see :meth:`otpr_sb3.guidance.dual_training.DualTrainer.diagnostics`)."""
        return self._trained().diagnostics(context, batch_size)

    def save_state(self) -> dict[str, Any] | None:  # noqa: D102
        return None if self.trainer is None else self.trainer.solver.state_dict()

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: D102
        self._trained().load_solver_state(state)
