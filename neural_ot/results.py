"""Result objects returned by the solvers: :class:`OTResult` (discrete problems) and :class:`DualResult` (stochastic).

:class:`OTResult` uses the field names of POT's ``ot.utils.OTResult`` where the meaning is the same
(``plan``, ``potentials``, ``potential_a``/``potential_b``, ``value``, ``value_linear``, ``marginal_a``/
``marginal_b``, ``status``, ``log``), and keeps its own where POT has no counterpart (``density``,
``value_dual``, ``marginal_errors``, ``converged``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch as th
from torch import nn

from neural_ot.compatibility import Compatibility
from neural_ot.costs import CostFn
from neural_ot.potentials import TabularPotential
from neural_ot.regularizers import get_regularizer


@dataclass(frozen=True)
class OTResult:
    """Solution of a discrete regularised OT problem (from :func:`~neural_ot.solve` or :func:`~neural_ot.solve_discrete`).

    Arrays are numpy arrays or torch tensors, matching the inputs, with the inputs' floating dtype.

    Attributes
    ----------
    plan : array of shape (n, m)
        Optimal plan :math:`T = a b^\\top \\odot H`.
    u, v : arrays of shape (n,), (m,)
        Optimal dual potentials.
    density : array of shape (n, m)
        Compatibility :math:`H` (Eq. 6), zero on masked-out pairs.
    value : float or torch.Tensor
        Primal objective :math:`\\langle C, T\\rangle + \\varepsilon \\sum_{ij} a_i b_j \\phi(H_{ij})` (POT's ``value``).
        When ``M``, ``a`` or ``b`` is a tensor that requires grad, a 0-dim tensor differentiable by the envelope
        theorem (its gradient in ``M`` is the plan; in ``a`` and ``b``, the potentials less the regulariser's
        term, up to a constant). The plan itself is not differentiated.
    value_dual : float
        Dual objective at ``(u, v)``; equals ``value`` at convergence.
    value_linear : float
        Linear part :math:`\\langle C, T\\rangle` (POT's ``value_linear``).
    marginal_errors : tuple of float
        Relative L1 errors ``(||T 1 - a||_1 / ||a||_1, ||T^T 1 - b||_1 / ||b||_1)``.
    n_iter : int
        Newton iterations (over all eps-continuation stages).
    n_sinkhorn : int
        Sinkhorn sweeps run before Newton (entropic problems; 0 for L2). A problem solved by the sweeps alone
        reports ``n_iter = 0``.
    converged : bool
        Whether ``max(marginal_errors) <= tol``.
    reg : float
    reg_type : str
    stalled : bool
        Whether Newton stopped before ``tol`` because the marginal error had not halved in 25 iterations.
    """

    plan: Any
    u: Any
    v: Any
    density: Any
    value: Any
    value_dual: float
    value_linear: float
    marginal_errors: tuple[float, float]
    n_iter: int
    converged: bool
    reg: float
    reg_type: str
    n_sinkhorn: int = 0
    stalled: bool = False

    @property
    def potentials(self) -> tuple[Any, Any]:
        """The pair ``(u, v)``."""
        return self.u, self.v

    def _with_cost_offset(self, offset: float, mass: float) -> OTResult:
        """Return this result of the costs ``C - offset`` as one of the costs ``C`` (``mass``: the weights' ``a``).

        The plan is the same; ``u`` and the values take the offset back (``<C, T> = <C - offset, T> + offset`` times
        the plan's mass; the dual value moves by ``offset`` times ``a``'s mass).
        """
        moved = float(self.plan.sum()) * offset
        return replace(
            self,
            u=self.u + offset,
            value=self.value + moved,
            value_linear=self.value_linear + moved,
            value_dual=self.value_dual + offset * mass,
        )

    @property
    def potential_a(self) -> Any:
        """``u``, the source potential (POT's name)."""
        return self.u

    @property
    def potential_b(self) -> Any:
        """``v``, the target potential (POT's name)."""
        return self.v

    @property
    def marginal_a(self) -> Any:
        """Row sums of the plan, ``T 1`` (POT's name)."""
        return self.plan.sum(1)

    @property
    def marginal_b(self) -> Any:
        """Column sums of the plan, ``T^T 1`` (POT's name)."""
        return self.plan.sum(0)

    @property
    def marginals(self) -> tuple[Any, Any]:
        """``(marginal_a, marginal_b)``."""
        return self.marginal_a, self.marginal_b

    @property
    def status(self) -> str:
        """Return ``"converged"``, ``"stalled"`` or ``"max_iter"``.

        ``"stalled"``: no progress towards ``tol`` for many iterations, typically the rounding floor of a badly scaled
        problem (see ``marginal_errors``); ``"max_iter"``: the budget ran out first.
        """
        if self.converged:
            return "converged"
        return "stalled" if self.stalled else "max_iter"

    def barycentric_projection(self, y: Any) -> Any:
        """Map each source point to the plan's mean of the targets ``y``: ``(T y) / (T 1)``, row by row.

        Parameters
        ----------
        y : array-like of shape (m, d)
            The target points (numpy or torch, as the plan).

        Returns
        -------
        array of shape (n, d)
            Rows with no mass (zero-weight sources) get the plan's mean target, so the output has no NaN.
        """
        T = th.as_tensor(self.plan)
        yt = th.as_tensor(y, dtype=T.dtype, device=T.device)
        if yt.ndim == 1:
            yt = yt[:, None]
        if yt.shape[0] != T.shape[1]:
            raise ValueError(f"`y` must have {T.shape[1]} rows (the plan's columns), got {yt.shape[0]}")
        mass = T.sum(1, keepdim=True)
        mean = (T.sum(0) @ yt) / T.sum().clamp_min(th.finfo(T.dtype).tiny)
        proj = th.where(mass > 0, (T @ yt) / mass.clamp_min(th.finfo(T.dtype).tiny), mean[None, :])
        return proj.numpy() if not isinstance(self.plan, th.Tensor) else proj

    @property
    def log(self) -> dict[str, Any]:
        """Solver diagnostics as a dict, like POT's ``log``."""
        return {
            "n_iter": self.n_iter,
            "n_sinkhorn": self.n_sinkhorn,
            "marginal_errors": self.marginal_errors,
            "value_dual": self.value_dual,
            "duality_gap": self.duality_gap,
            "status": self.status,
        }

    @property
    def marginal_error(self) -> float:
        """Largest of the two relative marginal errors."""
        return max(self.marginal_errors)

    @property
    def duality_gap(self) -> float:
        """``value - value_dual`` (non-negative up to rounding; zero at the optimum)."""
        return self.value - self.value_dual


@dataclass
class DualResult:
    """Potentials fitted by a stochastic solver, with the training history.

    Attributes
    ----------
    u, v : torch.nn.Module
        The potentials (the EMA copies when EMA was enabled), in eval mode.
    cost : CostFn
        The cost, with its normalisation scale frozen.
    reg : float
    reg_type : str
    n_steps : int
        Gradient steps taken by this fit.
    converged : bool
        Whether the estimated marginal error reached ``tol`` (``False`` when no ``tol`` was set).
    marginal_error : float
        Last estimate of the relative marginal error (NaN if never evaluated): a Monte-Carlo estimate on
        ``eval_batch_size`` points, with a noise floor of order ``1 / sqrt(eval_batch_size * fraction of
        pairs with H > 0)``. Under ``unbalanced``, measured against the marginals of the relaxed optimum
        (:mod:`neural_ot.relaxation`).
    history : dict of lists
        ``step``, ``objective``, ``marginal_error``, ``reg`` and ``lr`` at each evaluation.
    keypoints : (torch.Tensor, torch.Tensor, torch.Tensor), optional
        Of a masked fit: the matched keypoint pairs and their masses, which :meth:`compatibility` applies.
    """

    u: nn.Module
    v: nn.Module
    cost: CostFn
    reg: float
    reg_type: str
    n_steps: int
    converged: bool
    marginal_error: float
    history: dict[str, list[float]] = field(default_factory=dict)
    keypoints: tuple[th.Tensor, th.Tensor, th.Tensor] | None = None

    def compatibility(self) -> Compatibility:
        """Build the compatibility function :math:`H` of these potentials (neural potentials only).

        After a masked fit it carries the keypoint pairs, so that ``H`` holds the keypoint optimum (each pair
        carries its whole mass, ``H = 1 / w_k``; a keypoint's other pairs are masked out).
        """
        return Compatibility(self.u, self.v, self.cost, self.reg, self.reg_type, keypoints=self.keypoints)

    def potential_values(self, x: th.Tensor | None = None, y: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """Values of ``u`` and ``v``: the whole table for tabular potentials, else at ``x`` and ``y``.

        After a masked fit with neural potentials, the keypoint pairs take their closed-form optimum, as in
        :meth:`StochasticDual.potentials_on`: a row of ``y`` that is keypoint target ``k`` gets
        ``v = c(x_k, y_k) + z_k - u(x_k)`` with ``density(z_k) = 1 / w_k``, so that a plan with the keypoint mask
        gives the pair its whole mass ``w_k``. (The potentials are trained on the other points.)
        """
        with th.no_grad():
            vals = []
            for pot, pts in ((self.u, x), (self.v, y)):
                if isinstance(pot, TabularPotential):
                    vals.append(pot.values.detach().clone())
                else:
                    if pts is None:
                        raise ValueError("neural potentials need the points to evaluate them on")
                    vals.append(pot(pts))
            if self.keypoints is not None and not isinstance(self.v, TabularPotential) and y is not None:
                vals[1] = self._keypoint_optimum(y, vals[1])
        return vals[0], vals[1]

    def _keypoint_optimum(self, y: th.Tensor, v: th.Tensor) -> th.Tensor:
        """``v`` with the rows of ``y`` that are keypoint targets set to the keypoint pairs' optimum."""
        assert self.keypoints is not None
        kx, ky, kw = (t.to(v.device, v.dtype) for t in self.keypoints)
        same = (y.reshape(len(y), -1)[:, None, :] == ky.reshape(len(ky), -1)[None, :, :]).all(-1)
        rows = th.nonzero(same.any(1)).flatten()
        if not len(rows):
            return v
        k = same[rows].float().argmax(1)
        z = get_regularizer(self.reg, self.reg_type).inverse_density(1.0 / kw[k])
        v = v.clone()
        v[rows] = self.cost.paired_matrix(kx[k], ky[k]).to(v.dtype) + z - self.u(kx[k]).to(v.dtype)
        return v
