r"""Newton's method on the relaxed dual (:mod:`neural_ot.relaxation`), for :func:`neural_ot.solve_discrete`.

The relaxation adds ``-a u^2 / (2 rho_x) - b v^2 / (2 rho_y)`` to the dual, so its Hessian is the balanced problem's
(:mod:`neural_ot._newton_system`) plus the diagonal ``a / rho_x``, ``b / rho_y``: the same Newton system, better
conditioned, with the gradient measured against the optimum's marginals ``a (1 - u / rho_x)``, ``b (1 - v / rho_y)``.
L-BFGS alone (:mod:`neural_ot._relaxed_discrete`) crawled where ``rho`` is large against ``reg``: the dual is then
nearly flat along the balanced problem's constant shift, and on 60 x 50 problems that these iterations solve in tens
it ended at marginal errors from 4e-7 to 1, after 21 to 501 iterations (``docs/conventions.rst`` has the benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch as th

from neural_ot._dual_problem import _Problem
from neural_ot._newton import _SHIFT_AFTER, _STALL_ITERS, _line_search, _newton_direction, continuation
from neural_ot._newton_system import _Curvature
from neural_ot._shifted_relaxation import ShiftedRelaxation, recentred
from neural_ot._tree_shifts import tree_shifts
from neural_ot.regularizers import Entropic
from neural_ot.relaxation import MarginalRelaxation

# Levenberg factors tried in turn (of the balanced Newton's term, :data:`neural_ot._newton._DELTA`): the penalty makes
# the Hessian definite, and the balanced problem's term, 1e-2 of the mean curvature times the error, dwarfed the
# penalty's a / rho along the constant shift (rho 1e3, reg 1e-2: a stall at marginal error 0.1 on weights of unequal
# mass, which the shift must absorb).
_RELAXED_DAMPINGS = (0.0, 1e-3, 1.0, 1e3)
_MASS_FLOOR = 1e-12  # the smallest plan mass, relative to the weights', that marginal errors are relative to
_DAMP_MORE_BELOW = 1e-5  # an accepted Newton step shorter than this: the next damping is tried too
_SHORT_STEP = 0.1  # entropic: a Newton step cut below this length is followed by exact block steps


def relaxed_errors(
    rows: th.Tensor, cols: th.Tensor, targets: tuple[th.Tensor, th.Tensor], weights: tuple[th.Tensor, th.Tensor]
) -> tuple[float, float]:
    """Relative L1 errors of a plan's marginals against the relaxed optimum's, ``targets``.

    Relative to the target's mass, but never to less than ``1e-12`` of the weights' (``weights``): away from the
    optimum ``a (1 - u / rho)`` can sum to zero or less, where a relative error would be negative or meaningless (and
    below any ``tol``), and where the optimal plan is empty (``rho`` far below the costs) its mass is rounding.
    """
    out = []
    for mass, target, w in ((rows, targets[0], weights[0]), (cols, targets[1], weights[1])):
        total = max(float(target.sum()), _MASS_FLOOR * float(w.sum()))
        out.append(float((mass - target).abs().sum()) / total)
    return out[0], out[1]


class _RelaxedMerit:
    """The relaxed dual's loss and marginal errors, in the interface :func:`neural_ot._newton._line_search` takes."""

    def __init__(self, prob: _Problem, relaxation: MarginalRelaxation) -> None:
        self.prob, self.relaxation, self.shape = prob, relaxation, prob.shape

    def _penalty(self, u: th.Tensor, v: th.Tensor) -> float:
        return float(self.relaxation.penalty(u, v, self.prob.a, self.prob.b))

    def loss(self, u: th.Tensor, v: th.Tensor) -> float:
        """Negative relaxed dual (minimised); ``inf`` on overflow."""
        value = self.prob.loss(u, v) + self._penalty(u, v)
        return value if value == value else math.inf

    def line_loss(
        self, u: th.Tensor, v: th.Tensor, du: th.Tensor, dv: th.Tensor, z: th.Tensor, active: th.Tensor | None, dense: bool
    ) -> Callable[[float], float]:
        """Return the loss along ``(u, v) + t (du, dv)``: the balanced problem's, plus the penalty (on vectors only)."""
        along = self.prob.line_loss(u, v, du, dv, z, active, dense)

        def f(t: float) -> float:
            value = along(t) + self._penalty(u + t * du, v + t * dv)
            return value if value == value else math.inf

        return f

    def marginal_errors(self, u: th.Tensor, v: th.Tensor) -> tuple[float, float]:
        """Relative L1 errors of the plan of ``(u, v)`` against the optimum's marginals at ``(u, v)``."""
        prob = self.prob
        targets = self.relaxation.marginals(u, v, prob.a, prob.b)
        return relaxed_errors(*prob.plan_marginals(u, v), targets, (prob.a, prob.b))


def relaxed_start(prob: _Problem) -> tuple[th.Tensor, th.Tensor]:
    """Cold-start potentials: ``u_i`` the row's smallest allowed cost, ``v = 0``.

    Every row then has its best pair at ``z = 0`` and none above: a plan of the data's own scale, which neither
    overflows an entropic density nor leaves an L2 plan empty (zeros did both on costs far from 0).
    """
    C = prob.C if prob.off is None else prob.C.masked_fill(prob.off, math.inf)
    u = C.min(dim=1).values
    return th.where(th.isfinite(u), u, th.zeros_like(u)), th.zeros(prob.shape[1], dtype=u.dtype, device=u.device)


def entropic_block_step(prob: _Problem, relaxation: MarginalRelaxation, u: th.Tensor, v: th.Tensor, side: str) -> th.Tensor:
    r"""Exact maximisation of the entropic relaxed dual over ``u`` (``side="u"``) or ``v``, the other fixed.

    Row ``i``'s optimum solves :math:`e^{(t - \bar u_i) / \varepsilon} = 1 - t / \rho`, with :math:`\bar u_i` the
    balanced block step (the row's exact mass :math:`a_i`). With :math:`w = (\rho - t) / \varepsilon` that is
    :math:`w + \log w = y = \log(\rho / \varepsilon) + (\rho - \bar u_i) / \varepsilon` (a Lambert W, whose
    argument :math:`e^y` overflows when ``rho`` is large against ``reg``), solved for :math:`\log w` by Newton's method,
    which from :math:`\log y` (or ``y`` when :math:`y \le 1`) descends monotonically to the root. A stage of the
    continuation starts with the previous stage's potentials, whose plan at the smaller ``reg`` carries up to
    :math:`e^{60}` times its mass; Newton steps on an exponential remove about a factor :math:`e` each (on 60 x 50
    points at ``reg`` 1e-4, ``rho`` 1: 170 iterations at the target without these steps, 20 with them). Under a
    :class:`~neural_ot._shifted_relaxation.ShiftedRelaxation` the side's whole potential is ``t + delta`` (``delta``
    the shift on the rows, minus it on the columns): ``rho - delta`` replaces ``rho`` where ``t`` meets it.
    """
    shift = relaxation.shift if isinstance(relaxation, ShiftedRelaxation) else 0.0
    delta = shift if side == "u" else -shift
    if side == "u":
        C, other, w, rho, current = prob.C, v, prob.b, relaxation.rho_x, u
    else:
        C, other, w, rho, current = prob.C.T, u, prob.a, relaxation.rho_y, v
    mask = None if prob.mask is None else (prob.mask > 0 if side == "u" else (prob.mask > 0).T)
    balanced = prob.r.row_potential(C - other[None, :], w, mask)
    if rho == math.inf:
        out = balanced
    else:
        reg = prob.r.reg
        y = math.log(rho / reg) + (rho - delta - balanced) / reg
        s = th.where(y > 1.0, th.log(y.clamp(min=1.0)), y)  # log w, at or right of the root: e^s + s >= y
        for _ in range(60):
            ds = (s.exp() + s - y) / (s.exp() + 1.0)
            s = s - ds
            if float(ds.abs().max()) <= 1e-15 * max(1.0, float(s.abs().max())):
                break
        out = (rho - delta) - reg * s.exp()
        for _ in range(2):  # in t itself: rho - reg w cancels digits when rho >> reg (1e-10 of the mass at 1e6)
            step = (th.log1p(-(out + delta) / rho) - (out - balanced) / reg) / (1.0 / (rho - delta - out) + 1.0 / reg)
            out = th.where(th.isfinite(step), out + step, out)  # at t = rho (reg w below rho's ulp): kept
    return th.where(th.isfinite(out), out, current)


def relaxed_newton(
    prob: _Problem,
    relaxation: MarginalRelaxation,
    u: th.Tensor,
    v: th.Tensor,
    tol: float,
    max_iter: int,
    cg_max_iter: int,
) -> tuple[th.Tensor, th.Tensor, MarginalRelaxation, int, bool]:
    """Damped Newton iterations on the relaxed dual from ``(u, v)``; returns ``(u, v, relaxation, iterations, converged)``.

    Stops early, unconverged, when no step reduces the dual or the marginal error has not halved in
    ``_STALL_ITERS`` iterations: the caller continues from that point by L-BFGS. The potentials' common level is
    carried apart (:func:`~neural_ot._shifted_relaxation.recentred`) once it exceeds the costs' scale: the returned
    ``(u, v)`` are relative to the returned relaxation's shift.
    """
    n = prob.shape[0]
    entropic = isinstance(prob.r, Entropic)
    scale = max(abs(c) for c in prob.cost_range)
    ka = prob.a / relaxation.rho_x if relaxation.rho_x != math.inf else th.zeros_like(prob.a)
    kb = prob.b / relaxation.rho_y if relaxation.rho_y != math.inf else th.zeros_like(prob.b)
    merit = _RelaxedMerit(prob, relaxation)
    loss: float | None = merit.loss(u, v)
    best, best_it = math.inf, 0
    for it in range(1, max_iter + 1):
        u, v, shifted = recentred(u, v, relaxation, scale)
        if shifted is not relaxation:  # the same dual, its terms computed apart
            relaxation, merit = shifted, _RelaxedMerit(prob, shifted)
            loss = merit.loss(u, v)
        z = prob.z(u, v)
        curv = _Curvature(prob, z)
        targets = relaxation.marginals(u, v, prob.a, prob.b)
        error = max(relaxed_errors(curv.row_mass, curv.col_mass, targets, (prob.a, prob.b)))
        if error <= tol:
            return u, v, relaxation, it - 1, True
        if error <= 0.5 * best:
            best, best_it = error, it
        if loss is None or loss == math.inf or it - best_it >= _STALL_ITERS:
            return u, v, relaxation, it - 1, False
        g = th.cat([curv.row_mass - targets[0], curv.col_mass - targets[1]])
        curv.d1, curv.d2 = curv.d1 + ka, curv.d2 + kb  # the penalty's curvature: the relaxed sides' nodes are all free
        found = _damped_step(merit, u, v, curv, g, z, loss, error, cg_max_iter)
        if found is None:
            return u, v, relaxation, it - 1, False
        t, step, cand, free_u, free_v = found
        u, v, loss = u + t * step[:n], v + t * step[n:], cand
        # Isolated nodes (no curvature) can only be on an exact side: its exact block step, as in the balanced Newton.
        iso_u = th.nonzero(~free_u).flatten() if relaxation.rho_x == math.inf else u.new_empty(0, dtype=th.long)
        iso_v = th.nonzero(~free_v).flatten() if relaxation.rho_y == math.inf else v.new_empty(0, dtype=th.long)
        if iso_u.numel() + iso_v.numel():
            u = prob.block_maximize(u, v, iso_u, side="u")
            v = prob.block_maximize(u, v, iso_v, side="v")
            loss = None
        if entropic and t < _SHORT_STEP:
            # Far from the optimum the quadratic model of an exponential is poor and the line search cuts the step
            # to a sliver; exact block steps (never decreasing the dual) make the progress it cannot.
            u = entropic_block_step(prob, relaxation, u, v, "u")
            v = entropic_block_step(prob, relaxation, u, v, "v")
            loss = None
        if not entropic and it - best_it >= _SHIFT_AFTER:
            u, v, loss = _tree_shifted(merit, u, v, loss, (ka, kb))
        if loss is None:
            loss = merit.loss(u, v)
    return u, v, relaxation, max_iter, False


def _damped_step(
    merit: _RelaxedMerit,
    u: th.Tensor,
    v: th.Tensor,
    curv: _Curvature,
    g: th.Tensor,
    z: th.Tensor,
    loss: float,
    error: float,
    cg_max_iter: int,
) -> tuple[float, th.Tensor, float | None, th.Tensor, th.Tensor] | None:
    """Return the step length, direction, loss there and free nodes of a damped Newton step; ``None`` if none.

    The dampings are tried in turn until a step of length at least ``_DAMP_MORE_BELOW`` is accepted; failing that,
    the accepted step of lowest loss. Undamped, a nearly singular system can give a direction the line search accepts
    only at 1e-8 to 5e-7 of its length, iteration after iteration (1000 x 1085 points, rows relaxed at rho 722 on very
    uneven weights, POT reg 0.027: all 500 iterations, ending at marginal error 3e-3; with the damped steps it stops
    at the plan's rounding floor, 6e-9, after 164). A threshold of 1e-3 instead failed 2 more of the small relaxed
    benchmark's problems (``examples/benchmarks/bench_relaxed.py``).
    """
    n = merit.shape[0]
    best: tuple[float, th.Tensor, float | None, th.Tensor, th.Tensor] | None = None
    for damping in _RELAXED_DAMPINGS:
        step, free_u, free_v = _newton_direction(merit.prob, curv, g, min(error, 1.0), cg_max_iter, damping)
        t, accepted, cand = _line_search(merit, u, v, step, z, curv, g, loss, error)  # type: ignore[arg-type]
        if not accepted:
            continue
        if t >= _DAMP_MORE_BELOW:
            return t, step, cand, free_u, free_v
        if cand is None:  # accepted on the marginal error: its loss, to compare with the other dampings'
            cand = merit.loss(u + t * step[:n], v + t * step[n:])
        if best is None or cand < best[2]:  # type: ignore[operator]
            best = (t, step, cand, free_u, free_v)
    return best


def _tree_shifted(
    merit: _RelaxedMerit, u: th.Tensor, v: th.Tensor, loss: float | None, curvature: tuple[th.Tensor, th.Tensor]
) -> tuple[th.Tensor, th.Tensor, float]:
    """Return ``(u, v)`` with the unbalanced trees of the active pairs shifted, if that lowers the loss, and the loss.

    Once the error stops halving, trees whose excess mass the penalty barely absorbs (the Hessian nearly singular
    along their shifts) may be crawling, as in the balanced solver: 20 of 48 problems of 150-250 points at POT reg
    1e-3 ran all 500 iterations without the shifts. Shifts made one after another can overshoot a pair that none of
    them listed; such a move is not taken.
    """
    prob, relaxation = merit.prob, merit.relaxation
    before = loss if loss is not None else merit.loss(u, v)
    shifted = tree_shifts(prob, u, v, relaxation.marginals(u, v, prob.a, prob.b), curvature)
    after = merit.loss(*shifted) if shifted[0] is not u else math.inf
    return (shifted[0], shifted[1], after) if after <= before else (u, v, before)


def relaxed_continuation(
    prob: _Problem,
    relaxation: MarginalRelaxation,
    u: th.Tensor,
    v: th.Tensor,
    tol: float,
    max_iter: int,
    cg_max_iter: int,
    cold: bool,
) -> tuple[th.Tensor, th.Tensor, MarginalRelaxation, int, bool]:
    """:func:`relaxed_newton` on a decreasing sequence of ``reg`` from a cold start, as the balanced solver's stages.

    A small ``reg`` makes the dual nearly piecewise linear (L2) or its density a steep exponential (entropic), where
    Newton from far away stalls (entropic, ``reg`` 1e-4 of the costs' spread: no progress from the cold start); each
    stage, solved loosely, starts the next close to its optimum. A warm start (``cold=False``) runs the target alone.
    Returns ``(u, v, relaxation, iterations, converged)``, the potentials relative to the relaxation's shift.
    """
    schedule, stage_tol = continuation(prob, cold)
    done, converged = 0, False
    for k, reg in enumerate(schedule):
        last = k == len(schedule) - 1
        stage = prob if last else prob.with_regularizer(type(prob.r)(reg), coarse=True)
        if isinstance(stage.r, Entropic) and (cold or k > 0):
            u = entropic_block_step(stage, relaxation, u, v, "u")
            v = entropic_block_step(stage, relaxation, u, v, "v")
        u, v, relaxation, it, converged = relaxed_newton(
            stage, relaxation, u, v, tol if last else max(tol, stage_tol), max_iter - done, cg_max_iter
        )
        done += it
        if done >= max_iter:
            break
    return u, v, relaxation, done, converged and last
