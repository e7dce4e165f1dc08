"""Regularised semismooth Newton iterations on the discrete dual, with eps continuation and an L2 working set.

See :mod:`neural_ot.discrete` for the method; this module holds the Newton direction (dense Cholesky, or
preconditioned CG on the operator of :mod:`neural_ot._newton_system`), the Armijo line search and the stages.
"""

from __future__ import annotations

import numpy as np
import torch as th

from neural_ot._dual_problem import _Problem, _SparseProblem, above, count_above, count_true
from neural_ot._newton_system import _DELTA, _Curvature, _HessianOperator, _pcg
from neural_ot._sinkhorn_sweeps import kernel_is_safe, sinkhorn_sweeps
from neural_ot._small_newton import all_active_start, dense_l2_newton
from neural_ot._tree_shifts import tree_shifts
from neural_ot._working_set import _FLOW_CHECK_PAIRS, add_candidates
from neural_ot.regularizers import Entropic, SquaredL2

# Ratio between successive eps of the continuation, and the marginal error at which an intermediate stage hands over:
# for L2, 300 and 1e-2 (30 and 1e-4 until the stall check stopped misreading slow far phases: 1.06-1.44x faster on
# the benchmark's n = 600-2000 problems, docs/benchmarks.rst; every solve of a 60-problem sweep converged); entropic
# stages unchanged (300 and 1e-2 gave no gain there).
_CONTINUATION = 300.0
_STAGE_TOL = 1e-2
_CONTINUATION_ENTROPIC = 30.0
_STAGE_TOL_ENTROPIC = 1e-4
# An intermediate L2 stage runs in float32 where rounding the costs there is below this share of 2 eps (a lower bound of
# its typical z on active pairs, 2 eps m / k with k of them per row): it is solved to 1e-2 only, and half the bytes per
# dense pass cut the CPU time (docs/benchmarks.rst, "Intermediate stages in float32"). 5e-2, not 1e-2 as first: the
# middle stage of n = 2000 (POT reg 0.1) then runs in float32 too, 0.83x the solve's CPU time, the same plans.
_SINGLE_ROUNDING = 5e-2
_WORKING_SET_K = 8  # candidates per row and per column kept in the L2 working set
_WORKING_SET_FRACTION = 0.25  # above this fraction of active pairs, the full matrix is used directly (0.05: the
# early continuation stages ran dense, 15-25% slower at n = 1000-2000)
_WORKING_SET_ROUNDS = 50
_WORKING_SET_ROUND_ITERS = 100  # Newton iterations of one working-set round before the full check enlarges the set
# Newton systems with min(n, m)^2 max(n, m) up to this are solved by dense Cholesky of the Schur complement; above
# it, CG or sparse LU on the active graph is faster even for a nearly dense plan (about 150 x 150 on one core).
_DENSE_SOLVE_WORK = 4e6
# CPU L2 problems up to this min(n, m)^2 max(n, m) (about 215 x 215) run their stages in numpy (_small_newton): the
# torch stage was faster from 250 x 250 on dense plans and 270 x 270 on masked ones (docs/benchmarks.rst).
_NUMPY_STAGE_WORK = 1e7
# Up to this min(n, m)^2 max(n, m) (about 330 x 330) an unmasked cold CPU L2 stage runs in numpy too where the
# all-active optimum has this share of its pairs active: its CG steps took 0.34-0.65x the full-matrix torch stage's
# time at 250-330 points (final densities 12-98%); sparser starts keep the working set, faster there from 250 points.
_NUMPY_DENSE_WORK = 3.6e7
_NUMPY_DENSE_START = 0.6
# L2 stages below this many pairs run on the full matrix, the others on a working set (which falls back to the full
# matrix itself once a quarter of the pairs are active). On the CPU every stage above the numpy stage's limit takes the
# working set: on sparse plans of 250-400 points it was 1.5-3.4x faster than the full matrix, on dense ones as fast
# (bench_stage_dispatch.py, docs/benchmarks.rst). Accelerators keep the threshold set on the CPU on 2026-11-22.
_WORKING_SET_MIN_PAIRS = 0
_WORKING_SET_MIN_PAIRS_ACCELERATOR = 250_000
# Stall: the best marginal error has not halved in this many Newton iterations (rounding floor, or no progress).
_STALL_ITERS = 25
_STALL_PROGRESS = 1e-9  # ... and the dual has improved by less than this (relative) over those iterations
_SHIFT_AFTER = 5  # L2: unbalanced trees are shifted exactly once the error has not halved in this many iterations
_FIRST_STAGE = 1e-2  # the continuation starts at the first eps below this share of the costs' spread
_DAMPINGS = (1.0, 1e3, 1e6)  # Levenberg damping factors tried in turn when a Newton step is rejected
_ALL_ACTIVE_START = 0.5  # a cold L2 start uses the all-active optimum when this share of pairs is active there


def _newton(
    prob: _Problem,
    tol: float,
    max_iter: int,
    cg_max_iter: int,
    verbose: bool,
    start: tuple[th.Tensor, th.Tensor] | None = None,
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """Maximise the dual with eps-continuation; returns ``(u, v, iterations, converged)``.

    Small eps makes the dual nearly piecewise linear, where Newton's method is slow from a cold start.
    Solving a sequence of problems with eps decreasing by ``_CONTINUATION`` (L2), from the scale of the
    costs' spread, warm-starts each stage close to its solution. Given ``start`` potentials (a warm start,
    e.g. the previous solve of a training loop), Newton runs on the target eps alone from them.
    """
    n, m = prob.shape
    target = prob.r
    l2 = isinstance(target, SquaredL2)
    if start is not None and l2 and max(prob.marginal_errors(*start)) > _CONTINUATION:
        # The warm start's plan carries more excess mass than a continuation stage starts from (the previous eps's
        # optimum at eps / _CONTINUATION): it is farther from the optimum than the cold solve's own stages, and Newton
        # from it took 2x (n = 300) to 10x (n = 1000, POT reg 0.01) the cold solve's time (another point cloud's).
        start = None
    u = th.zeros(n, dtype=prob.C.dtype, device=prob.C.device) if start is None else start[0].clone()
    v = th.zeros(m, dtype=prob.C.dtype, device=prob.C.device) if start is None else start[1].clone()
    schedule, stage_tol = continuation(prob, cold=start is None)
    total = 0
    converged = False
    cpu = prob.C.device.type == "cpu"
    for k, reg in enumerate(schedule):
        last = k == len(schedule) - 1
        small = n * m < (_WORKING_SET_MIN_PAIRS if cpu else _WORKING_SET_MIN_PAIRS_ACCELERATOR)
        stage = _working_set_stage if l2 and not small else _newton_stage
        numpy, dense = _numpy_suits(prob, reg, cold=k == 0 and start is None) if l2 and cpu else (False, None)
        if numpy:  # a dense stage starts where `_numpy_suits` looked (`_numpy_stage` would compute it again)
            stage, (u, v) = _numpy_stage, dense or (u, v)
        single = l2 and not last and not numpy and _single_suffices(prob, reg)
        # Each stage is its own problem: `prob` keeps the target regulariser throughout.
        base = prob.single() if single else prob
        stage_prob = prob if last else base.with_regularizer(type(target)(reg), coarse=True)
        if single:
            u, v = u.float(), v.float()
        u, v, it, converged = stage(
            stage_prob, u, v, tol if last else max(tol, stage_tol), max_iter - total, cg_max_iter, verbose
        )
        if single:
            u, v = u.double(), v.double()
        if stage_prob is not prob:
            prob.sinkhorn_sweeps += stage_prob.sinkhorn_sweeps
        total += it
        # A stalled intermediate stage only ends early (the next eps may well converge); the target's is final.
        prob.stalled = last and stage_prob.stalled and not converged
        if total >= max_iter:
            break
    if not last:
        # The budget ran out in a coarser stage, whose potentials can overflow the target's plan (entropic: exp of
        # z / eps at a far smaller eps, a NaN value): exact block steps at the target bring every row and then column
        # to its mass there, and never increase the dual.
        u, v = _block_start(prob, u, v)
    # Converged only if the target stage was reached and met `tol`.
    return u, v, total, converged and last


def _numpy_suits(prob: _Problem, reg: float, cold: bool) -> tuple[bool, tuple[th.Tensor, th.Tensor] | None]:
    """Whether a CPU L2 stage runs in numpy (small, or dense up to ``_NUMPY_DENSE_WORK``), and a dense one's start."""
    n, m = prob.shape
    work = min(n, m) ** 2 * max(n, m)
    if work <= _NUMPY_STAGE_WORK:
        return True, None
    if work > _NUMPY_DENSE_WORK or not cold or prob.mask is not None:
        return False, None
    C, a, b = prob.C.numpy(), prob.a.numpy(), prob.b.numpy()
    start = all_active_start(C, a, b, reg, _NUMPY_DENSE_START)
    return (False, None) if start is None else (True, (th.from_numpy(start[0]), th.from_numpy(start[1])))


def _single_suffices(prob: _Problem, reg: float) -> bool:
    """Whether an intermediate stage at ``reg`` can run in float32 (a float64 problem whose rounding there is small)."""
    lo, hi = prob.cost_range
    rounding = float(th.finfo(th.float32).eps) * max(abs(lo), abs(hi))
    return prob.C.dtype == th.float64 and rounding <= _SINGLE_ROUNDING * 2.0 * reg


def continuation(prob: _Problem, cold: bool) -> tuple[list[float], float]:
    """Return the stages' regularisation strengths, coarsest first and ending at the target's, and a stage's tol.

    From a cold start, the first is the first ``reg`` below ``_FIRST_STAGE`` of the costs' spread in steps of
    ``_CONTINUATION`` (L2) or ``_CONTINUATION_ENTROPIC``; a warm start runs the target alone.
    """
    l2 = isinstance(prob.r, SquaredL2)
    ratio, stage_tol = (_CONTINUATION, _STAGE_TOL) if l2 else (_CONTINUATION_ENTROPIC, _STAGE_TOL_ENTROPIC)
    lo, hi = prob.cost_range
    schedule = [prob.r.reg]
    while cold and hi > lo and schedule[-1] * ratio < _FIRST_STAGE * (hi - lo):
        schedule.append(schedule[-1] * ratio)
    return schedule[::-1], stage_tol


def _numpy_stage(
    prob: _Problem, u: th.Tensor, v: th.Tensor, tol: float, max_iter: int, cg_max_iter: int, verbose: bool
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """L2 stage of a small CPU problem by the numpy Newton (:mod:`neural_ot._small_newton`), up to 1.7x faster there.

    Where that gives up before ``tol`` and ``max_iter`` (an isolated point, a rejected step, slow progress), the
    torch stage continues from its point, with the block steps, damping and stall check that it lacks.
    """
    C = prob.C.numpy() if prob.mask is None else np.where(prob.mask.numpy() > 0, prob.C.numpy(), np.inf)
    a, b = prob.a.numpy(), prob.b.numpy()
    start = None
    if _is_cold(u, v):  # the cold start's all-active optimum in numpy too; block steps (torch) where it does not apply
        start = None if prob.mask is not None else all_active_start(C, a, b, prob.r.reg, _ALL_ACTIVE_START)
        if start is None:
            u, v = _block_start(prob, u, v)
    un, vn = (u.numpy(), v.numpy()) if start is None else start
    un, vn, it, converged = dense_l2_newton(C, a, b, prob.r.reg, un, vn, tol, max_iter, verbose)
    u, v = th.from_numpy(un), th.from_numpy(vn)
    if converged or it >= max_iter:
        prob.stalled = False
        return u, v, it, converged
    u, v, more, converged = _newton_stage(prob, u, v, tol, max_iter - it, cg_max_iter, verbose)
    return u, v, it + more, converged


def _working_set_stage(
    prob: _Problem, u: th.Tensor, v: th.Tensor, tol: float, max_iter: int, cg_max_iter: int, verbose: bool
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """L2 stage on a working set of pairs when few are active, checked against the full matrix.

    The working set holds the active pairs plus the ``_WORKING_SET_K`` best candidates of every row and
    column, enlarged until a plan exists on it (max-flow check): on a set that cannot carry all the mass, the
    restricted dual is unbounded and Newton would run off. Newton runs on it for at most
    ``_WORKING_SET_ROUND_ITERS`` iterations; a pass over the full matrix then either confirms that no other
    pair is active (the solution is exact for the full problem) or enlarges the set and continues.
    """
    if _is_cold(u, v):
        # From a cold start only: later stages start from the previous stage's potentials, which the working-set
        # Newton corrects without full-matrix block steps (7-23% faster on the benchmark, the same optima).
        u, v = _cold_start(prob, u, v)
    n, m = prob.shape
    total = 0
    work: th.Tensor | None = None
    k = _WORKING_SET_K
    for _ in range(_WORKING_SET_ROUNDS):
        z = prob.z_allowed(u, v)  # dead before any Newton iteration on `prob` writes that buffer
        positive = above(z)
        count = int(count_true(positive))
        if count > _WORKING_SET_FRACTION * n * m:
            # Leaving the full matrix for a working set within such a stage, once few pairs have curvature, was tried:
            # faster at n = 2000 (POT reg 0.01), slower at n = 600-1500 and 3000 in trial runs, so not kept.
            u, v, it, conv = _newton_stage(prob, u, v, tol, max_iter - total, cg_max_iter, verbose, initial_block=False)
            return u, v, total + it, conv
        # The set only grows (no cycling), and the candidates per row double after each miss, and until it is feasible.
        work = positive.clone() if work is None else work.logical_or_(positive)
        few = count <= _FLOW_CHECK_PAIRS
        while True:
            flat, rows, cols, feasible = add_candidates(prob, z, positive if few else None, work, k)
            k *= 2
            if feasible or k >= max(n, m):
                break
        if not feasible:
            u, v, it, conv = _newton_stage(prob, u, v, tol, max_iter - total, cg_max_iter, verbose, initial_block=False)
            return u, v, total + it, conv
        sub = _SparseProblem(prob, rows, cols, flat)
        budget = min(max_iter - total, _WORKING_SET_ROUND_ITERS)
        u, v, it, conv = _newton_stage(sub, u, v, tol, budget, cg_max_iter, verbose, initial_block=False)
        total += it
        # No pair outside the set is active when the full matrix has as many active pairs as the set: z is computed
        # the same way on both ((u_i + v_j) - c_ij), so the set's pairs count alike.
        inside = count_above(sub.z(u, v, out=sub.scratch("tmp")))
        if count_above(prob.z_allowed(u, v)) == inside and (conv or sub.stalled):
            prob.stalled = sub.stalled and not conv  # nothing to add to the set: the stall is the full problem's
            return u, v, total, conv
        if total >= max_iter:
            break
    return u, v, total, False


def _newton_direction(
    prob: _Problem | _SparseProblem,
    curv: _Curvature,
    g: th.Tensor,
    error: float,
    cg_max_iter: int,
    damping: float = 1.0,
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Levenberg-regularised Newton step on the non-isolated nodes: dense Cholesky, sparse direct or CG.

    ``damping`` multiplies the Levenberg term (raised after a rejected step). Returns the step and the masks of
    free (non-isolated) ``u`` and ``v`` nodes.
    """
    d1, d2 = curv.d1, curv.d2
    scale = float(th.cat([d1, d2]).max())
    free_u, free_v = d1 > 1e-14 * scale, d2 > 1e-14 * scale
    mean = float(th.cat([d1, d2]).mean())
    delta = min(mean, max(1e-12 * scale, damping * _DELTA * min(1.0, error) * mean))
    op = _HessianOperator(curv, delta, free_u, free_v)
    rhs = -g * op.free
    if min(prob.shape) ** 2 * max(prob.shape) <= _DENSE_SOLVE_WORK:
        step = op.solve_dense(rhs)
    elif curv.direct:
        step = op.solve_sparse(rhs)
    else:
        step = _pcg(op, rhs, op.diagonal, rtol=min(0.1, error**0.5), max_iter=cg_max_iter)
    return step, free_u, free_v


def _line_search(
    prob: _Problem | _SparseProblem,
    u: th.Tensor,
    v: th.Tensor,
    step: th.Tensor,
    z: th.Tensor,
    curv: _Curvature,
    g: th.Tensor,
    loss: float,
    error: float,
) -> tuple[float, bool, float | None]:
    """Backtracking along ``step``: Armijo on the dual, or the marginal error where the dual cannot resolve it.

    Returns the step length, whether it was accepted, and the loss there (``None`` after a step on the marginal
    error: the loss is then computed only if another step needs it, which near the optimum is rare).
    """
    n = prob.shape[0]
    slope = float(g @ step)
    t, cand = 1.0, loss
    if abs(slope) < 1e-13 * max(1.0, abs(loss)):
        # The expected decrease is below the float64 resolution of the objective, where Armijo would
        # accept meaningless steps; near the optimum the marginal error is the merit function instead.
        for _ in range(10):
            if max(prob.marginal_errors(u + t * step[:n], v + t * step[n:])) < error:
                return t, True, None
            t *= 0.5
        return t, False, cand
    along = prob.line_loss(u, v, step[:n], step[n:], z, curv.active, curv.dense)
    for _ in range(50):
        cand = along(t)
        if cand <= loss + 1e-4 * t * slope:
            return t, True, cand
        t *= 0.5
    return t, False, cand


def _initial_block(
    prob: _Problem | _SparseProblem, u: th.Tensor, v: th.Tensor, tol: float
) -> tuple[th.Tensor, th.Tensor, bool]:
    """Start a stage: exact block steps (or a safe constant for a cold entropic start), then Sinkhorn if entropic.

    Returns the potentials and whether Sinkhorn alone met ``tol``.
    """
    entropic = isinstance(prob, _Problem) and isinstance(prob.r, Entropic)
    cold = _is_cold(u, v)
    if isinstance(prob, _Problem) and entropic and cold and kernel_is_safe(prob):
        u = th.full_like(u, prob.cost_range[0])  # the kernel then lies in [exp(-spread / eps), 1]
    elif cold:
        u, v = _cold_start(prob, u, v)
    else:
        u, v = _block_start(prob, u, v)  # they bound the kernel (from zero potentials: Sinkhorn's first sweep)
    if entropic:
        assert isinstance(prob, _Problem)
        u, v, err = sinkhorn_sweeps(prob, u, v, tol)
        return u, v, err <= tol
    return u, v, False


def _is_cold(u: th.Tensor, v: th.Tensor) -> bool:
    """Whether a stage starts from zero potentials (a cold start, not a previous stage's or a warm start's)."""
    return bool((u == 0).all()) and bool((v == 0).all())


def _cold_start(prob: _Problem | _SparseProblem, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Return starting potentials from zero: the all-active L2 optimum where it applies, else exact block steps.

    If every pair were active, the L2 dual would be quadratic with the closed-form optimum
    ``u = C b + c``, ``v = C^T a + c``, ``2 c = 2 eps - a^T C b`` (every row and column then has positive mean
    ``z``, so none is isolated). Two mat-vec products instead of a sort or root search per row, and where most
    pairs are active (the first continuation stage, a large reg) Newton starts next to the optimum.
    """
    if isinstance(prob, _Problem) and isinstance(prob.r, SquaredL2) and prob.mask is None:
        Cb, aC = prob.C @ prob.b, prob.a @ prob.C
        c = 0.5 * (2.0 * prob.r.reg - float(prob.a @ Cb))
        u0, v0 = Cb + c, aC + c
        # Where fewer than half the pairs are active there, the block steps start closer. (On N(0, 1) costs at
        # reg 0.05, n = 64-256, the closed form passes and needs 5 Newton iterations instead of 3, in the same
        # time: the block steps it saves cost about two iterations.)
        if count_above(prob.z(u0, v0, out=prob.scratch("tmp"))) >= _ALL_ACTIVE_START * prob.C.numel():
            return u0, v0
    return _block_start(prob, u, v)


def _block_start(prob: _Problem | _SparseProblem, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Exact block steps from ``(u, v)``: every row, then every column, at its mass."""
    u = prob.block_maximize(u, v, side="u")
    return u, prob.block_maximize(u, v, side="v")


def _newton_stage(
    prob: _Problem | _SparseProblem,
    u: th.Tensor,
    v: th.Tensor,
    tol: float,
    max_iter: int,
    cg_max_iter: int,
    verbose: bool,
    initial_block: bool = True,
) -> tuple[th.Tensor, th.Tensor, int, bool]:
    """Newton iterations at a fixed eps from ``(u, v)``; stops early (``prob.stalled``) when progress stalls."""
    if initial_block:
        u, v, done = _initial_block(prob, u, v, tol)
        if done:  # Sinkhorn alone reached tol: no Newton step, no dense pass more (checked by the result)
            return u, v, 0, True
    loss: float | None = None
    converged, it = False, 0
    best, best_it = float("inf"), 0
    mark: float | None = None  # the dual's loss when the best marginal error was last set
    prob.stalled = False
    for it in range(1, max_iter + 1):
        z = prob.z(u, v, out=prob.scratch("z"))
        curv = _Curvature(prob, z, reuse=True)
        ea, eb = curv.marginal_error(prob)
        if verbose:
            print(f"eps {prob.r.reg:.2e}  newton {it:3d}  marginal error {max(ea, eb):.3e}")
        if max(ea, eb) <= tol:
            converged = True
            it -= 1
            break
        if loss is None:  # needed by the line search and the stall check
            loss = prob.loss(u, v)
        if max(ea, eb) <= 0.5 * best:
            best, best_it, mark = max(ea, eb), it, loss
        elif it - best_it >= _STALL_ITERS:
            # Far from the optimum the marginal error is not monotone (the line search is on the dual) and can take
            # longer to halve while the dual still improves: a stall is the error's and the dual's.
            if mark is not None and mark - loss > _STALL_PROGRESS * max(1.0, abs(loss)):
                best_it, mark = it, loss
            else:
                prob.stalled = True
                it -= 1
                break
        u, v, loss = _newton_step(prob, u, v, z, curv, loss, max(ea, eb), cg_max_iter)
        if it - best_it >= _SHIFT_AFTER and isinstance(prob.r, SquaredL2):
            shifted = tree_shifts(prob, u, v)  # the error stopped halving: unbalanced trees may be crawling
            if shifted[0] is not u:
                # Kept only if the dual improves: shifts capped at the reach of a dense problem's largest pairs, made
                # one after another, can overshoot a pair none of them listed (as in the relaxed solver).
                before = loss if loss is not None else prob.loss(u, v)
                after = prob.loss(*shifted)
                u, v, loss = (shifted[0], shifted[1], after) if after <= before else (u, v, before)
        del z
    return u, v, it, converged


def _newton_step(
    prob: _Problem | _SparseProblem,
    u: th.Tensor,
    v: th.Tensor,
    z: th.Tensor,
    curv: _Curvature,
    loss: float,
    error: float,
    cg_max_iter: int,
) -> tuple[th.Tensor, th.Tensor, float | None]:
    """One damped Newton step, with exact block steps on isolated nodes; returns the potentials and their loss.

    A rejected step is retried with more Levenberg damping: near the optimum the active graph can be a forest whose
    trees carry unequal mass, the Newton system is then nearly singular, and its step shifts whole trees so far
    that no step length reduces the error (the block steps that replaced it crawled, 2% per iteration at n = 2000).
    """
    n = prob.shape[0]
    g = th.cat([curv.row_mass - prob.a, curv.col_mass - prob.b])
    for damping in _DAMPINGS:
        step, free_u, free_v = _newton_direction(prob, curv, g, error, cg_max_iter, damping)
        t, accepted, cand = _line_search(prob, u, v, step, z, curv, g, loss, error)
        if accepted:
            break
    # Exact block steps never decrease the dual: they repair isolated points, or replace a failed step.
    if not accepted:
        u, v = _block_start(prob, u, v)
        return u, v, prob.loss(u, v)
    u, v = u + t * step[:n], v + t * step[n:]
    iso_u, iso_v = th.nonzero(~free_u).flatten(), th.nonzero(~free_v).flatten()
    if iso_u.numel() + iso_v.numel() == 0:
        return u, v, cand
    u = prob.block_maximize(u, v, iso_u, side="u")
    v = prob.block_maximize(u, v, iso_v, side="v")
    return u, v, prob.loss(u, v)
