r"""Exact discrete OT with relaxed marginals (:mod:`neural_ot.relaxation`), for :func:`neural_ot.solve_discrete`.

Newton's method (:mod:`neural_ot._relaxed_newton`) maximises the relaxed dual; where it stops short of ``tol``, L-BFGS
(scipy, in float64) continues from its point. When one side is exact (the semi-relaxed problem), L-BFGS optimises only
the relaxed side's potential, the exact side's being its smooth c-transform
(:meth:`~neural_ot.regularizers.Regularizer.row_potential`, which holds that side's marginal exactly): by the envelope
theorem the gradient is that of the dual at the c-transform. Both stop when the plan's marginals are within ``tol``
(relative L1) of those the optimum has, ``a (1 - u / rho_x)`` and ``b (1 - v / rho_y)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch as th
from scipy.optimize import minimize, root

from neural_ot._arrays import ArrayLike, to_output
from neural_ot._dual_problem import _Problem
from neural_ot._relaxed_newton import relaxed_continuation, relaxed_errors, relaxed_start
from neural_ot._shifted_relaxation import whole_potentials
from neural_ot.duals import _dual_value
from neural_ot.relaxation import MarginalRelaxation
from neural_ot.results import OTResult


class _Converged(Exception):
    """Raised from the L-BFGS callback once ``tol`` is met (scipy has no stopping rule on marginals)."""


def _potentials(prob: _Problem, relaxation: MarginalRelaxation, x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """``(u, v)`` from the optimised variables: both, or the relaxed side with the exact side's c-transform."""
    n, m = prob.shape
    keep = None if prob.mask is None else prob.mask > 0
    if relaxation.rho_x == math.inf:
        v = x
        return prob.r.row_potential(prob.C - v[None, :], prob.b, keep), v
    if relaxation.rho_y == math.inf:
        u = x
        return u, prob.r.row_potential(prob.C.T - u[None, :], prob.a, None if keep is None else keep.T)
    return x[:n], x[n:]


def plan_and_errors(
    prob: _Problem, relaxation: MarginalRelaxation, u: th.Tensor, v: th.Tensor
) -> tuple[th.Tensor, th.Tensor, tuple[float, float]]:
    """Density, plan and relative marginal errors against the relaxed optimum's marginals."""
    H, T = prob.plan(u, v)
    targets = relaxation.marginals(u, v, prob.a, prob.b)
    return H, T, relaxed_errors(T.sum(1), T.sum(0), targets, (prob.a, prob.b))


def solve_relaxed(
    prob: _Problem,
    relaxation: MarginalRelaxation,
    tol: float,
    max_iter: int,
    init: tuple[th.Tensor, th.Tensor] | None = None,
    cg_max_iter: int = 1000,
) -> tuple[th.Tensor, th.Tensor, MarginalRelaxation, int, bool]:
    """Maximise the relaxed dual of ``prob`` from ``init``; returns ``(u, v, relaxation, iterations, converged)``.

    Newton's method (:mod:`neural_ot._relaxed_newton`) first; where it stops short of ``tol`` (no step reduces the
    dual, or it stalls), L-BFGS continues from its point with the iterations left. ``(u, v)`` are relative to the
    returned relaxation's shift (:mod:`neural_ot._shifted_relaxation`), on which the plan keeps its precision.
    """
    u0, v0 = relaxed_start(prob) if init is None else init
    u0, v0, relaxation, done, converged = relaxed_continuation(
        prob, relaxation, u0, v0, tol, max_iter, cg_max_iter, init is None
    )
    if converged or done >= max_iter:
        return u0, v0, relaxation, done, converged
    u, v, more, converged = _lbfgs(prob, relaxation, tol, max_iter - done, (u0, v0))
    return u, v, relaxation, done + more, converged


def _lbfgs(
    prob: _Problem, relaxation: MarginalRelaxation, tol: float, max_iter: int, init: tuple[th.Tensor, th.Tensor]
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """L-BFGS on the relaxed dual from ``init`` (on the relaxed side alone when the other is exact)."""
    u0, v0 = init
    x0 = v0 if relaxation.rho_x == math.inf else u0 if relaxation.rho_y == math.inf else th.cat([u0, v0])
    state: dict[str, Any] = {"iter": 0, "x": x0.detach().cpu().double().numpy().copy()}

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = th.tensor(x, dtype=th.float64, device=prob.C.device, requires_grad=True)
        u, v = _potentials(prob, relaxation, xt)
        if relaxation.rho_x == math.inf:
            u = u.detach()  # the envelope theorem: the c-transform's own gradient does not enter
        elif relaxation.rho_y == math.inf:
            v = v.detach()
        value = _dual_value(u, v, prob.C, prob.r, prob.a, prob.b, prob.mask, relaxation)
        (grad,) = th.autograd.grad(-value, xt)
        state["screen"] = (x.copy(), _gradient_error(relaxation, u.detach(), v.detach(), grad, prob))
        return -float(value.detach()), grad.cpu().numpy()

    def check(x: np.ndarray) -> None:
        state["iter"] += 1
        state["x"] = x.copy()
        seen, error = state["screen"]
        if error > tol and np.array_equal(seen, x):  # the plan's own check (one dense pass more) only near tol
            return
        with th.no_grad():
            u, v = _potentials(prob, relaxation, th.as_tensor(x, device=prob.C.device))
            if max(plan_and_errors(prob, relaxation, u, v)[2]) <= tol:
                raise _Converged

    converged = False
    try:
        res = minimize(objective, state["x"], jac=True, method="L-BFGS-B", callback=check,
                       options={"maxiter": max_iter, "maxcor": 20, "gtol": 0.0, "ftol": 0.0})  # fmt: skip
        state["x"] = res.x
    except _Converged:
        converged = True
    if not converged:
        # max |gradient| <= tol mass / size bounds its L1 norm, the marginal error times the mass, by tol mass.
        fatol = tol * float(min(prob.a.sum(), prob.b.sum())) / state["x"].size
        state["x"] = _polish(lambda x: objective(x)[1], state["x"], state, max_iter, fatol)
    with th.no_grad():
        u, v = _potentials(prob, relaxation, th.as_tensor(state["x"], device=prob.C.device))
        converged = converged or max(plan_and_errors(prob, relaxation, u, v)[2]) <= tol
    return u, v, state["iter"], converged


def _gradient_error(relaxation: MarginalRelaxation, u: th.Tensor, v: th.Tensor, grad: th.Tensor, prob: _Problem) -> float:
    """Return the relaxed sides' marginal errors read off the dual's gradient (the plan's marginal minus its target).

    An exact side's marginal is held by the c-transform, so it is not screened here; the plan's own check confirms it.
    """
    rows, cols = relaxation.marginals(u, v, prob.a, prob.b)
    n = prob.shape[0]
    if relaxation.rho_x == math.inf:
        return float(grad.abs().sum() / cols.sum())
    if relaxation.rho_y == math.inf:
        return float(grad.abs().sum() / rows.sum())
    return max(float(grad[:n].abs().sum() / rows.sum()), float(grad[n:].abs().sum() / cols.sum()))


def _polish(gradient: Any, x: np.ndarray, state: dict[str, Any], max_iter: int, fatol: float) -> np.ndarray:
    """Newton-Krylov on the optimality condition ``gradient(x) = 0`` from L-BFGS's last point.

    L-BFGS's line search compares objective values, which float64 resolves only to about 1e-16 of their size; near the
    optimum the gradient is still far more precise than that, and the active set no longer changes, so a few
    Newton steps on it reach what the line search cannot. The polished point is kept only if it is better.
    """
    g0 = float(np.abs(gradient(x)).sum())
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            options = {"maxiter": max(1, min(20, max_iter - state["iter"])), "fatol": fatol}
            sol = root(gradient, x, method="krylov", options=options)
    except OverflowError:  # its line search squares the norm of an entropic gradient that overflowed: keep L-BFGS's point
        return x
    state["iter"] += int(getattr(sol, "nit", 0) or 0)
    polished = float(np.abs(gradient(sol.x)).sum())
    return sol.x if polished < g0 else x  # a NaN gradient compares False: L-BFGS's point is kept


def relaxed_values(
    prob: _Problem, relaxation: MarginalRelaxation, u: th.Tensor, v: th.Tensor, H: th.Tensor, T: th.Tensor
) -> tuple[float, float, float]:
    """``(primal value, dual value, linear part)`` of the relaxed problem at ``(u, v)`` and its plan."""
    transport = float(th.vdot(prob.C.reshape(-1), T.reshape(-1)))
    penalty = prob.masked(prob.r.primal(H)).mul_(prob.a[:, None]).mul_(prob.b[None, :]).sum()
    primal = transport + float(penalty)
    for rho, mass, w in ((relaxation.rho_x, T.sum(1), prob.a), (relaxation.rho_y, T.sum(0), prob.b)):
        if rho != math.inf:
            deviation = th.where(w > 0, (mass - w).square() / th.where(w > 0, w, 1.0), 0.0)
            primal += 0.5 * rho * float(deviation.sum())
    dual = float(_dual_value(u, v, prob.C, prob.r, prob.a, prob.b, prob.mask, relaxation))
    return primal, dual, transport


def solve_relaxed_problem(
    full: _Problem,
    relaxation: MarginalRelaxation,
    tol: float,
    max_iter: int,
    as_numpy: bool,
    out_dtype: th.dtype,
    init: tuple[th.Tensor, th.Tensor] | None,
    cg_max_iter: int = 1000,
) -> tuple[OTResult, th.Tensor, th.Tensor, MarginalRelaxation]:
    """Solve and assemble a relaxed problem; returns the result, the float64 potentials and their relaxation.

    The potentials are relative to that relaxation's shift (:mod:`neural_ot._shifted_relaxation`); the result's are
    whole.
    """
    u, v, relaxation, n_iter, converged = solve_relaxed(full, relaxation, tol, max_iter, init, cg_max_iter)
    H, T, errors = plan_and_errors(full, relaxation, u, v)
    value, value_dual, transport = relaxed_values(full, relaxation, u, v, H, T)
    if not (value == value and value_dual == value_dual):
        raise FloatingPointError("solve_discrete produced NaN; the problem is badly scaled (check `M`, `reg`, `unbalanced`)")
    stalled = not converged and n_iter < max_iter  # both methods stopped before the budget: no progress left
    if not converged:
        why = "stalled (neither Newton's method nor L-BFGS made progress) after" if stalled else "stopped after"
        warnings.warn(
            f"solve_discrete did not reach tol={tol:g} on the relaxed problem (marginal errors {errors[0]:.3g}, "
            f"{errors[1]:.3g}); it {why} {n_iter} iterations{full.floor_note(u, v, errors)}",
            RuntimeWarning,
            stacklevel=3,
        )

    def out(t: th.Tensor) -> ArrayLike:
        return to_output(t, as_numpy, out_dtype)

    whole = whole_potentials(u, v, relaxation)
    res = OTResult(
        out(T),
        out(whole[0]),
        out(whole[1]),
        out(H),
        value,
        value_dual,
        transport,
        errors,
        n_iter,
        converged,
        full.r.reg,
        full.r.name,
        stalled=stalled,
    )
    return res, u, v, relaxation
