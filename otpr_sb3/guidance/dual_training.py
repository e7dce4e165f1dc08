"""Training of OTPR's dual potentials: the stochastic L2 dual on replay states and actions, and its diagnostics."""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch as th

from neural_ot import CostFn, L2Dual, dual_objective, plan, relative_marginal_errors, solve_discrete
from otpr_sb3.guidance.base import UpdateContext


class DualOwner(Protocol):
    """What the trainer reads and sets on the guidance it trains (see ``CompatibilityGuidance``)."""

    obs_dim: int
    act_dim: int
    reg: float
    keypoint_version: int
    keypoint_obs: th.Tensor
    keypoint_actions: th.Tensor
    reference_actions: th.Tensor
    relation_weight: float
    relation_scale: str

    @property
    def uses_relation_cost(self) -> bool: ...  # noqa: D102

    def update_relation_spread(self, obs_n: th.Tensor, actions: th.Tensor, rate: float = 0.01) -> None: ...  # noqa: D102

    @property
    def u(self) -> th.nn.Module: ...  # noqa: D102

    @property
    def v(self) -> th.nn.Module: ...  # noqa: D102

    @property
    def dual_cost(self) -> CostFn: ...  # noqa: D102

    def set_reference_actions(self, actions: th.Tensor, mass: float = 1.0) -> None: ...  # noqa: D102

    def state_potential(self, obs_n: th.Tensor, n_reference: int | None = None) -> th.Tensor: ...  # noqa: D102


class DualTrainer:
    """Trains the potentials of a compatibility guidance on the replay buffer.

    Parameters
    ----------
    guidance : DualOwner
        The guidance whose potentials, cost and keypoints define the problem.
    method : {"gradient", "semi-dual", "exact"}
        Update rule of each dual step (:mod:`neural_ot.dual_updates`).
    learning_rate, batch_size, steps, steps_per_batch
        Adam step size, minibatch, minibatches per update and Adam steps per minibatch.
    reference_actions : int
        ``M > 0``: ``u(s)`` is the c-transform of ``v`` over ``M`` replay actions redrawn at every update.
    unbalanced : float, optional
        ``rho``: relax the action marginal (the semi-relaxed dual, ``neural_ot``'s ``unbalanced=(inf, rho)``); the
        states' marginal stays exact. ``None``: balanced.
    use_mask : bool
        Apply the keypoint mask whenever the guidance has keypoints.
    seed : int, optional
    device : str or torch.device
    """

    def __init__(
        self,
        guidance: DualOwner,
        method: str = "semi-dual",
        learning_rate: float = 1e-3,
        batch_size: int = 48,
        steps: int = 1,
        steps_per_batch: int = 1,
        reference_actions: int = 0,
        unbalanced: float | None = None,
        use_mask: bool = True,
        seed: int | None = None,
        device: str | th.device = "cpu",
    ) -> None:
        self.guidance = guidance
        self.method, self.learning_rate = method, float(learning_rate)
        self.batch_size, self.steps, self.steps_per_batch = int(batch_size), int(steps), int(steps_per_batch)
        self.reference_actions, self.use_mask = int(reference_actions), bool(use_mask)
        self.unbalanced = None if unbalanced is None else float(unbalanced)
        self.seed, self.device = seed, str(device)
        self.solver = self._new_solver()
        self._problem_version: tuple[bool, int] | None = None  # the keypoints the solver's problem was set up with
        self._told_unmasked = False

    #: States and actions (each) of the matrix on which the relation cost's spread is measured at every update.
    SPREAD_SAMPLE = 32

    def _new_solver(self) -> L2Dual:
        g = self.guidance
        solver = L2Dual(
            g.reg,
            cost=g.dual_cost,
            potentials=(g.u, g.v),
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            steps_per_batch=self.steps_per_batch,
            max_steps=self.steps,
            eval_batch_size=32,
            device=self.device,
            seed=self.seed,
            method=self.method,
            unbalanced=None if self.unbalanced is None else (math.inf, self.unbalanced),
        )
        solver.build(g.obs_dim, g.act_dim)
        return solver

    def rebuild(self) -> None:
        """Rebuild the solver for the guidance's current ``reg``, keeping its optimiser state and minibatch stream."""
        state = self.solver.state_dict()
        self.solver = self._new_solver()
        self.load_solver_state(state)
        self._problem_version = None

    def load_solver_state(self, state: dict[str, Any]) -> None:
        """Restore a solver state (optimiser, minibatch stream) with this trainer's learning rate."""
        self.solver.load_state_dict(state)
        assert self.solver.optimizer is not None
        for group in self.solver.optimizer.param_groups:
            group["lr"] = self.learning_rate

    @property
    def masked(self) -> bool:
        """Whether the keypoint mask is on (``use_mask`` and keypoints present)."""
        return self.use_mask and len(self.guidance.keypoint_obs) > 0

    def setup(self, context: UpdateContext) -> None:
        """Fix the solver's problem (replay samplers, and the keypoints under the mask) when it changed."""
        g = self.guidance
        if self.use_mask and not len(g.keypoint_obs) and not self._told_unmasked:
            self._told_unmasked = True
            if context.verbose >= 1:
                relation = " and the relation cost is off" if g.relation_weight > 0 else ""
                print(
                    "OTPR: no expert keypoints (no `pretrain`), so the keypoint mask is all ones: the dual solves "
                    f"unmasked OT{relation} until demonstrations provide keypoints."
                )
        version = (self.masked, g.keypoint_version)
        if version == self._problem_version:
            return
        kwargs: dict[str, Any] = {}
        if self.masked:
            K = len(g.keypoint_obs)
            kwargs = dict(keypoints=(g.keypoint_obs, g.keypoint_actions), keypoint_mass=K / (K + self.batch_size))
        self.solver.setup(context.sample_states, context.sample_actions, **kwargs)
        self._problem_version = version

    def update(self, context: UpdateContext) -> dict[str, Any]:
        """Take ``steps`` dual steps, redraw the reference actions, and diagnose when the context asks for it."""
        self.setup(context)
        g = self.guidance
        if g.relation_scale == "spread" and g.uses_relation_cost:  # from the evaluation stream: training draws on
            n = self.SPREAD_SAMPLE
            g.update_relation_spread(
                context.sample_states(n, context.eval_generator), context.sample_actions(n, context.eval_generator)
            )
        objective = th.zeros(())
        for _ in range(self.steps):
            objective = self.solver.step()
        if self.reference_actions:
            self._refresh_reference_actions(context)
        stats: dict[str, Any] = {"dual_objective": objective.detach()}  # a tensor: read when logs are written
        if context.diagnostics_batch_size:
            stats.update(self.diagnostics(context, context.diagnostics_batch_size))
        return stats

    def _refresh_reference_actions(self, context: UpdateContext) -> None:
        """Draw the reference actions of ``u(s)``, with the mass regular states can reach."""
        K = len(self.guidance.keypoint_obs) if self.use_mask else 0
        mass = self.batch_size / (K + self.batch_size)  # the keypoints' share is theirs alone
        actions = context.sample_actions(self.reference_actions, context.reference_generator)
        self.guidance.set_reference_actions(actions, mass)

    @th.no_grad()
    def diagnostics(self, context: UpdateContext, batch_size: int = 256) -> dict[str, float]:
        """How well the potentials solve a held-out replay minibatch of the training problem.

        Returns ``marginal_error`` (the worse of ``marginal_error_states`` and ``marginal_error_actions``, relative L1
        errors of the plan's marginals against those of the optimum: the weights, or under ``unbalanced`` the actions'
        ``b (1 - v / rho)``), ``h_nonzero_frac_heldout``, and ``dual_gap`` (``(D* - D(u, v)) / |D*|`` against the exact
        optimum of the same minibatch from :func:`neural_ot.solve_discrete`, relaxed as training is). Under
        ``unbalanced`` also ``action_marginal_shift`` (relative L1 distance of the optimum's action marginal from the
        replay's); there ``dual_gap`` is left out on a masked batch, whose keypoint columns keep their mass (a problem
        ``solve_discrete``'s relaxation does not state).
        """
        g = self.guidance
        self.setup(context)
        batch = self.solver.sample_batch(int(batch_size), context.eval_generator)
        wx, wy, mask = batch.wx, batch.wy, batch.mask
        C = g.dual_cost.matrix(batch.x, batch.y)
        # Keypoint pairs (under the mask) at their closed-form optimum, as the solver defines them.
        u, v = self.solver.potentials_on(batch, potentials=(g.u, g.v))
        if len(g.reference_actions):  # u as H uses it (keypoint rows keep their closed form)
            K = batch.n_keypoints
            u = th.cat([u[:K], g.state_potential(batch.x[K:])])
        T = plan(u, v, C, g.reg, wx, wy, mask=mask)
        rows, cols = self.solver.target_marginals(batch, u, v)
        error_states, error_actions = relative_marginal_errors(T.sum(1), T.sum(0), rows, cols)
        stats = {
            "marginal_error": max(error_states, error_actions),
            "marginal_error_states": error_states,
            "marginal_error_actions": error_actions,
        }
        h_nonzero = {"h_nonzero_frac_heldout": float((T > 0).float().mean())}  # weights are positive: T > 0 iff H > 0
        relaxed = None if self.unbalanced is None else (math.inf, self.unbalanced)
        if relaxed is not None:  # how far the actions' mass moved
            stats["action_marginal_shift"] = float((cols - wy).abs().sum() / wy.sum())
            if mask is not None:  # keypoint columns keep their mass: not a problem solve_discrete's relaxation states
                return {**stats, **h_nonzero}
        value = float(dual_objective(u, v, C, g.reg, wx, wy, mask, unbalanced=relaxed))
        exact = solve_discrete(
            wx.double().cpu(),
            wy.double().cpu(),
            C.double().cpu(),
            g.reg,
            mask=None if mask is None else mask.double().cpu(),
            tol=1e-7,
            unbalanced=relaxed,
        )
        best = float(exact.value_dual)
        return {**stats, "dual_gap": (best - value) / max(abs(best), 1e-12), **h_nonzero}  # the logged keys' order
