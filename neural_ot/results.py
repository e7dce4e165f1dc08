"""Result objects returned by the solvers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OTResult:
    """Solution of a discrete regularised OT problem, as returned by :func:`~neural_ot.solve_discrete`.

    Arrays are numpy arrays or torch tensors, matching the inputs, with the inputs' floating dtype.

    Attributes
    ----------
    plan : array of shape (n, m)
        Optimal plan :math:`T = a b^\\top \\odot H`.
    u, v : arrays of shape (n,), (m,)
        Optimal dual potentials.
    density : array of shape (n, m)
        Compatibility :math:`H` (Eq. 6), zero on masked-out pairs.
    value : float
        Primal objective :math:`\\langle C, T\\rangle + \\varepsilon \\sum_{ij} a_i b_j \\phi(H_{ij})`.
    value_dual : float
        Dual objective at ``(u, v)``; equals ``value`` at convergence.
    transport_cost : float
        Linear part :math:`\\langle C, T\\rangle`.
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
    """

    plan: Any
    u: Any
    v: Any
    density: Any
    value: float
    value_dual: float
    transport_cost: float
    marginal_errors: tuple[float, float]
    n_iter: int
    converged: bool
    reg: float
    reg_type: str
    n_sinkhorn: int = 0

    @property
    def potentials(self) -> tuple[Any, Any]:
        """The pair ``(u, v)``."""
        return self.u, self.v

    @property
    def marginal_error(self) -> float:
        """Largest of the two relative marginal errors."""
        return max(self.marginal_errors)

    @property
    def duality_gap(self) -> float:
        """``value - value_dual`` (non-negative up to rounding; zero at the optimum)."""
        return self.value - self.value_dual
