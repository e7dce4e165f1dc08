r"""Exact solver of regularised discrete OT: a regularised semismooth Newton method on the dual.

The dual of the density-regularised problem (see :mod:`neural_ot.regularizers`) is concave with a
Hessian of graph-Laplacian form,

.. math:: -\nabla^2 D = \begin{pmatrix} \mathrm{diag}(W 1) & W \\ W^\top & \mathrm{diag}(W^\top 1)\end{pmatrix},
   \qquad W_{ij} = a_i b_j m_{ij} (\phi^*)''(u_i + v_j - C_{ij}),

which is sparse for L2 regularisation (only active pairs) and dense for the entropic one. Each
iteration solves the Levenberg-regularised Newton system by preconditioned conjugate gradients with
a matrix-free product on the active set, followed by an Armijo line search; isolated points (no
active pair) are repaired by exact block maximisation, and for L2, once the error stops halving, trees of active
pairs that carry unequal mass are shifted to their exact optimum (the Hessian is singular along them). See Lorenz,
Manns and Meyer (2021), "Quadratically regularized optimal transport", for the L2 case.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch as th

from neural_ot import _threads
from neural_ot._arrays import ArrayLike, is_numpy, result_dtype, to_output, to_tensor
from neural_ot._dual_problem import _Problem
from neural_ot._newton import _newton
from neural_ot._relaxed_discrete import solve_relaxed_problem
from neural_ot._validation import (
    check_equal_mass,
    check_mask,
    check_masked_feasibility,
    check_matrix,
    check_positive_int,
    check_reg_resolvable,
    check_weights,
)
from neural_ot.duals import _dual_value, relative_marginal_errors
from neural_ot.regularizers import Regularizer, get_regularizer
from neural_ot.relaxation import MarginalRelaxation, get_relaxation
from neural_ot.results import OTResult


def _warm_start(potentials_init: tuple[ArrayLike, ArrayLike], C: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Check a warm start ``(u, v)`` against the cost matrix ``C`` and return it as float64 tensors."""
    n, m = C.shape
    init = (
        to_tensor(potentials_init[0], "potentials_init[0]", th.float64, C.device).reshape(-1),
        to_tensor(potentials_init[1], "potentials_init[1]", th.float64, C.device).reshape(-1),
    )
    if init[0].shape != (n,) or init[1].shape != (m,):
        shapes = f"{tuple(init[0].shape)}, {tuple(init[1].shape)}"
        raise ValueError(f"`potentials_init` must be (u, v) of shapes ({n},), ({m},), got {shapes}")
    if not (bool(th.isfinite(init[0]).all()) and bool(th.isfinite(init[1]).all())):
        raise ValueError("`potentials_init` must be finite")
    return init


def solve_discrete(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    reg: float,
    reg_type: str = "l2",
    mask: ArrayLike | None = None,
    tol: float = 1e-9,
    max_iter: int = 500,
    cg_max_iter: int = 1000,
    verbose: bool = False,
    potentials_init: tuple[ArrayLike, ArrayLike] | None = None,
    unbalanced: float | tuple[float, float] | None = None,
) -> OTResult:
    r"""Solve regularised OT between discrete measures exactly (to ``tol``), with an optional mask.

    .. math::
        \min_{T \in U(a, b),\ T_{ij} = 0 \text{ where } m_{ij} = 0}
        \langle M, T \rangle + \varepsilon \sum_{ij} a_i b_j \phi\Big(\frac{T_{ij}}{a_i b_j}\Big)

    with :math:`\phi(h) = h^2` for ``reg_type="l2"`` (the paper's Eq. 3-4, density-based) and
    :math:`\phi(h) = h\log h - h + 1` for ``"entropic"``. The dual (Eq. 5, 14) is maximised by a
    regularised semismooth Newton method in float64 (see :mod:`neural_ot.discrete`).

    Parameters
    ----------
    a : array-like of shape (n,) or None
        Source weights, non-negative; uniform when ``None``.
    b : array-like of shape (m,) or None
        Target weights, same total mass as ``a`` up to a relative ``tol`` (a larger mismatch raises
        ``ValueError``: it could never converge); uniform when ``None``. The solver rescales ``b`` to the mass
        of ``a``; ``marginal_errors`` are measured against the weights as given.
    M : array-like of shape (n, m)
        Cost matrix, finite.
    reg : float
        :math:`\varepsilon > 0`, the paper's :math:`\lambda`. POT's ``smooth_ot_dual(reg_type="l2")``
        uses :math:`\tfrac{r}{2}\|T\|^2`; with uniform weights it matches ``reg = r / (2 n m)``.
    reg_type : {"l2", "entropic"}
    mask : array-like of shape (n, m), optional
        0/1 mask, e.g. from :func:`~neural_ot.keypoint_mask`; no row or column may be all zero, and
        matched keypoints must carry equal mass (``a[i_k] == b[j_k]``), else the problem is infeasible. The costs
        of masked pairs are ignored (they need not be large, as POT's large-cost emulation of a mask needs them).
    tol : float
        Target relative L1 marginal error.
    max_iter : int
        Maximum Newton iterations.
    cg_max_iter : int
        Maximum conjugate-gradient iterations per Newton step.
    verbose : bool
        Print one line per iteration.
    potentials_init : (array-like (n,), array-like (m,)), optional
        A warm start: potentials ``(u, v)`` in cost units (``OTResult.potentials`` of an earlier solve, of this
        or a nearby problem). Newton then starts from them at the target ``reg``, without continuation. From a
        nearby problem (the same points moved a little) that takes fewer iterations than a cold solve. For L2, a
        warm start whose plan overshoots the marginals by more than a continuation stage's start does (relative
        marginal error above 300, as from the potentials of an unrelated problem at a small ``reg``) is dropped
        and the problem solved cold: Newton from it took up to 10x the cold solve's time (``n = 1000``). An
        entropic warm start is always used (from an unrelated problem it took up to 2.4x the cold solve's time at
        ``n = 300``).
    unbalanced : float or (float, float), optional
        Relax the marginals with a quadratic penalty (:mod:`neural_ot.relaxation`; ``(inf, rho)``: semi-relaxed).
        The masses of ``a`` and ``b`` may then differ. Solved by Newton's method on the relaxed dual, L-BFGS
        continuing where it stops short (``max_iter`` counts the iterations of both; ``potentials_init`` is the
        starting point), to ``tol`` against the marginals of the relaxed optimum.

    Returns
    -------
    OTResult
        Arrays of the same kind (numpy or torch) and floating dtype as the inputs.

    Notes
    -----
    A CPU problem of at most 250,000 pairs is solved on one torch thread (the thread count is process-wide and
    restored after the call): its passes are too short to share, and beside numpy code whose BLAS threads spin
    between calls, two threads were 1.24-1.55x slower (docs/benchmarks.rst). L2 problems of up to about 215 x 215
    pairs on the CPU run their Newton iterations in numpy (torch's per-operation overhead was most of their time).

    A balanced problem whose costs' minimum exceeds their spread (costs ``1e6 + [0, 1]``, or a constant) is solved on
    ``M - min(M)``, which has the same plan, and ``u`` and the values are moved back: the rounding of
    ``u + v - M`` grows with the costs' magnitude, and such costs had stalled far above ``tol``. A relaxed problem
    (``unbalanced``) is not invariant to a constant in the costs and is solved as given.

    Examples
    --------
    >>> import numpy as np, neural_ot
    >>> M = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = neural_ot.solve_discrete(None, None, M, reg=0.1)
    >>> np.round(res.plan, 6)
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    regularizer = get_regularizer(reg, reg_type)
    if not tol > 0:
        raise ValueError(f"`tol` must be positive, got {tol!r}")
    check_positive_int(max_iter, "max_iter")
    check_positive_int(cg_max_iter, "cg_max_iter")
    wants_grad = th.is_grad_enabled() and any(isinstance(t, th.Tensor) and t.requires_grad for t in (M, a, b))
    data = (M, a, b)  # as given, for the gradient; the solver works on detached copies
    M, a, b = (t.detach() if isinstance(t, th.Tensor) else t for t in data)
    weights_dtype = th.float64 if a is None and b is None else result_dtype(a, b)
    relaxation = get_relaxation(unbalanced)
    relaxed = (relaxation.rho_x != math.inf, relaxation.rho_y != math.inf)
    full = _validated_problem(a, b, M, mask, regularizer, tol, weights_dtype, relaxation.balanced, relaxed)
    init = None if potentials_init is None else _warm_start(potentials_init, full.C)
    offset = full.cost_offset() if relaxation.balanced else 0.0
    lo, hi = full.cost_range
    check_reg_resolvable(regularizer.reg, regularizer.name, max(abs(lo - offset), abs(hi - offset)), *full.C.shape)
    if relaxation.balanced:
        solved = full.shifted(offset) if offset else full
        init = None if init is None else (init[0] - offset, init[1])
        # The result too: on several threads, one vdot of its plan took milliseconds beside other processes.
        with _threads.one_thread_if_small(full.C.numel(), full.C.device):
            u, v, n_iter, converged, sweeps = _solve_on_support(solved, tol, max_iter, cg_max_iter, verbose, init)
            floor = rounding_floor(weights_dtype, *full.C.shape)
            res = _result(solved, u, v, n_iter, sweeps, converged, tol, is_numpy(M), result_dtype(M, a, b), floor)
        if offset:
            res = res._with_cost_offset(offset, float(full.a.sum()))
    else:
        with _threads.one_thread_if_small(full.C.numel(), full.C.device):
            res, u, v, relaxation = solve_relaxed_problem(
                full, relaxation, tol, max_iter, is_numpy(M), result_dtype(M, a, b), init, cg_max_iter
            )
    if wants_grad:
        res = dataclasses.replace(res, value=_envelope_value(res.value, u, v, *data, full, relaxation, offset))
    return res


def _envelope_value(
    value: float,
    u: th.Tensor,
    v: th.Tensor,
    M: ArrayLike,
    a: ArrayLike | None,
    b: ArrayLike | None,
    full: _Problem,
    relaxation: MarginalRelaxation,
    offset: float = 0.0,
) -> th.Tensor:
    """``value`` as a tensor whose gradient in ``M``, ``a`` and ``b`` is the envelope theorem's.

    At the optimum the value equals the dual objective at the optimal potentials, and its derivatives in the data are
    the dual objective's partial derivatives there: the plan for ``M``; for ``a`` and ``b``, the potentials minus
    the regulariser's term (defined up to a constant, as the mass constraint ties them). ``u`` are the potentials
    of the costs ``M - offset`` (``_Problem.cost_offset``), on which the plan's density is computed at full precision.
    """
    M64 = M.to(th.float64) if isinstance(M, th.Tensor) else full.C
    a64 = a.to(th.float64) if isinstance(a, th.Tensor) else full.a
    b64 = b.to(th.float64) if isinstance(b, th.Tensor) else full.b
    # a.u + b.v - penalty(u + v - M), with u the caller's potentials (u + offset) and the same u + v - M
    dual = _dual_value(u, v, M64 - offset if offset else M64, full.r, a64, b64, full.mask, relaxation)
    dual = dual + offset * a64.sum() if offset else dual
    dtype = next(t.dtype for t in (M, a, b) if isinstance(t, th.Tensor) and t.requires_grad)
    return (dual - dual.detach() + value).to(dtype)


def rounding_floor(dtype: th.dtype, n: int, m: int = 1) -> float:
    """Relative marginal error that rounding to ``dtype`` alone can cause in a sum over ``max(n, m)`` entries.

    Zero for float64 (its rounding is far below any usable ``tol``); for float32 weights or plans, a few units of
    float32 rounding times the square root of the row length, the size of rounding errors that add up randomly.
    """
    if dtype == th.float64:
        return 0.0
    return 4.0 * float(th.finfo(dtype).eps) * float(max(n, m)) ** 0.5


def _validated_problem(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    mask: ArrayLike | None,
    regularizer: Regularizer,
    tol: float,
    weights_dtype: th.dtype = th.float64,
    balanced: bool = True,
    relaxed: tuple[bool, bool] = (False, False),
) -> _Problem:
    """Build the float64 problem after every check of :func:`solve_discrete`'s contract.

    Weights of a lower precision than float64 must have equal mass up to their own rounding
    (:func:`rounding_floor`), not up to ``tol``; the problem solved gives ``b`` the mass of ``a``. A relaxed problem
    (``balanced=False``) takes the weights as given, of any masses, and its mask may leave the points of a relaxed
    side (``relaxed``: rows, columns) without any allowed pair: they carry no mass, and the penalty pays for it.
    """
    C = to_tensor(M, "M", dtype=th.float64).contiguous()  # row-major: the working set gathers by flat index
    check_matrix(C, "M")
    n, m = C.shape
    at = C.new_full((n,), 1.0 / n) if a is None else to_tensor(a, "a", th.float64, C.device)
    bt = C.new_full((m,), 1.0 / m) if b is None else to_tensor(b, "b", th.float64, C.device)
    check_weights(at, n, "a")
    check_weights(bt, m, "b")
    # `b` is rescaled to the mass of `a`, which leaves the relative mismatch in the marginal errors: more than
    # `tol` could never converge.
    if balanced:
        check_equal_mass(at, bt, rtol=max(tol, rounding_floor(weights_dtype, n, m)))
    maskt = None
    if mask is not None:
        maskt = to_tensor(mask, "mask", th.float64, C.device)
        check_mask(maskt, (n, m), empty_ok=relaxed)
        if not bool((maskt > 0).any()):
            raise ValueError("`mask` allows no pair: there is nothing to transport")
        if balanced:
            check_masked_feasibility(at, bt, maskt, rtol=tol)
        # Masked pairs carry no mass, but their costs set the range (continuation stages, `reg`'s resolution, the
        # entropic kernel's start): POT's habit of a huge cost there stalled solves, a low one overflowed `exp` to
        # NaN. Their copy takes the allowed pairs' largest cost.
        allowed = maskt > 0
        C = th.where(allowed, C, C.masked_select(allowed).max())
    return _Problem(at, bt, C, maskt, regularizer)


def _solve_on_support(
    full: _Problem,
    tol: float,
    max_iter: int,
    cg_max_iter: int,
    verbose: bool,
    init: tuple[th.Tensor, th.Tensor] | None = None,
) -> tuple[th.Tensor, th.Tensor, int, bool, int]:
    """Run Newton on the points of positive weight (zero-weight points carry no mass); potentials are 0 elsewhere.

    Returns the potentials, the iterations, whether they converged and the Sinkhorn sweeps.
    """
    at, bt, C, maskt = full.a, full.b, full.C, full.mask
    keep_a, keep_b = at > 0, bt > 0
    full_support = bool(keep_a.all()) and bool(keep_b.all())
    sub_C = C if full_support else C[keep_a][:, keep_b]
    sub_mask = None if maskt is None else (maskt if full_support else maskt[keep_a][:, keep_b])
    if sub_mask is not None and not full_support:
        check_mask(sub_mask, tuple(sub_mask.shape))  # type: ignore[arg-type]
    prob = _Problem(at[keep_a], bt[keep_b] * (at.sum() / bt.sum()), sub_C, sub_mask, full.r)
    start = None if init is None else (init[0][keep_a], init[1][keep_b])
    u_s, v_s, n_iter, converged = _newton(prob, tol, max_iter, cg_max_iter, verbose, start)
    full.adopt_scratch(prob)
    u, v = C.new_zeros(C.shape[0]), C.new_zeros(C.shape[1])
    u[keep_a], v[keep_b] = u_s, v_s
    full.stalled = prob.stalled
    return u, v, n_iter, converged, prob.sinkhorn_sweeps


def _verdict(
    T: th.Tensor, full: _Problem, converged: bool, tol: float, out_dtype: th.dtype, floor: float
) -> tuple[tuple[float, float], bool]:
    """Marginal errors of the plan as returned (in ``out_dtype``) and whether they meet ``tol`` (or the floor)."""
    at, bt = full.a, full.b
    errors = relative_marginal_errors(T.sum(1), T.sum(0), at, bt)
    # Against weights given in float32, their own rounding (and so the mass mismatch) is the floor, not `tol`.
    converged = converged and max(errors) <= max(tol, floor)
    if out_dtype != th.float64:  # report the error of what is returned, which carries its own rounding
        T_out = T.to(out_dtype).double()
        errors = relative_marginal_errors(T_out.sum(1), T_out.sum(0), at, bt)
        converged = converged and max(errors) <= max(tol, floor, rounding_floor(out_dtype, *T.shape))
    return errors, converged


def _result(
    full: _Problem,
    u: th.Tensor,
    v: th.Tensor,
    n_iter: int,
    sweeps: int,
    converged: bool,
    tol: float,
    as_numpy: bool,
    out_dtype: th.dtype,
    floor: float = 0.0,
) -> OTResult:
    """Assemble the result: plan, values and the convergence verdict against the weights as given (not rescaled).

    A handful of dense passes: ``z``, the density, the plan, and inner products with them (the penalties
    follow from the plan, :meth:`~neural_ot.regularizers.Regularizer.penalty_sums`).
    """
    at, bt, C, regularizer = full.a, full.b, full.C, full.r
    H, T = full.plan(u, v)  # zero off the support: masked pairs and zero-weight points (`_Problem.off`)
    transport = float(th.vdot(C.reshape(-1), T.reshape(-1)))
    row_mass, col_mass = T.sum(1), T.sum(0)
    total = float(row_mass.sum())
    tz = float(u @ row_mass + v @ col_mass) - transport  # sum_ij T_ij (u_i + v_j - C_ij)
    support_mass = float(at @ full.mask @ bt) if full.mask is not None else float(at.sum() * bt.sum())
    primal, dual_penalty = regularizer.penalty_sums(tz, total, support_mass)
    value = transport + primal
    # The dual of the problem Newton solved, whose `b` carries the mass of `a` (see `_solve_on_support`).
    scale = float(at.sum() / bt.sum())
    value_dual = float(at @ u) + scale * (float(bt @ v) - dual_penalty)
    if not (value == value and value_dual == value_dual):
        raise FloatingPointError("solve_discrete produced NaN; the problem is badly scaled (check `M` and `reg`)")
    errors, converged = _verdict(T, full, converged, tol, out_dtype, floor)
    stalled = full.stalled and not converged
    if not converged:
        why = "stalled (no progress for 25 iterations, in the error or the dual) after" if stalled else "stopped after"
        warnings.warn(
            f"solve_discrete did not reach tol={tol:g} (marginal errors {errors[0]:.3g}, {errors[1]:.3g}); it {why} "
            f"{n_iter} Newton iterations and {sweeps} Sinkhorn sweeps; see `marginal_errors`{full.floor_note(u, v, errors)}",
            RuntimeWarning,
            stacklevel=3,
        )

    def out(t: th.Tensor) -> ArrayLike:
        return to_output(t, as_numpy, out_dtype)

    return OTResult(
        plan=out(T),
        u=out(u),
        v=out(v),
        density=out(H),
        value=value,
        value_dual=value_dual,
        value_linear=transport,
        marginal_errors=errors,
        n_iter=n_iter,
        n_sinkhorn=sweeps,
        converged=converged,
        reg=regularizer.reg,
        reg_type=regularizer.name,
        stalled=stalled,
    )


def solve(
    M: ArrayLike,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    reg: float | None = None,
    reg_type: str = "l2",
    mask: ArrayLike | None = None,
    tol: float = 1e-9,
    max_iter: int = 500,
    verbose: bool = False,
    potentials_init: tuple[ArrayLike, ArrayLike] | None = None,
    unbalanced: float | tuple[float, float] | None = None,
) -> OTResult:
    r"""Solve a regularised discrete OT problem, in the call form of POT's ``ot.solve``.

    The same solver as :func:`solve_discrete`, with the cost matrix first and the weights optional, as in
    ``ot.solve(M, a, b, reg=..., reg_type=...)``; ``mask`` adds the keypoint (or any 0/1) support
    constraint.

    Parameters
    ----------
    M : array-like of shape (n, m)
        Cost matrix.
    a, b : array-like of shape (n,), (m,), optional
        Weights; uniform when omitted.
    reg : float
        :math:`\varepsilon > 0`. Required: unregularised OT is POT's ``ot.emd``.
    reg_type : {"l2", "entropic"}
        ``"kl"`` is accepted for ``"entropic"`` (POT's ``"KL"``: the same objective,
        :math:`\langle M, T\rangle + \varepsilon\,\mathrm{KL}(T \| a b^\top)`). ``"l2"`` is the paper's
        *density* regulariser :math:`\varepsilon \sum_{ij} T_{ij}^2 / (a_i b_j)`, not POT's
        ``reg_type="L2"`` (:math:`\tfrac{r}{2}\|T\|_F^2`); with uniform weights the two agree for
        ``reg = r / (2 n m)``.
    mask : array-like of shape (n, m), optional
        0/1 support mask (see :func:`solve_discrete`).
    tol, max_iter, verbose, potentials_init
        As in :func:`solve_discrete` (``potentials_init``: a warm start from earlier potentials).
    unbalanced : float or (float, float), optional
        Quadratic relaxation of the marginals, as POT's ``unbalanced`` with ``unbalanced_type="L2"`` but in the density
        convention (:mod:`neural_ot.relaxation`); ``(inf, rho)`` is semi-relaxed.

    Returns
    -------
    OTResult
        With POT's field names (``plan``, ``potentials``, ``value``, ``value_linear``, ``status``, ...). The
        potentials are in cost units with the plan ``a_i b_j H_ij``; POT's entropic ``ot.solve`` returns
        log-scalings ``f, g`` with plan ``exp(f_i + g_j - M_ij / reg)``, so ``f_i + g_j = (u_i + v_j) / reg +
        log(a_i b_j)``.

    Examples
    --------
    >>> import numpy as np, neural_ot
    >>> res = neural_ot.solve(np.array([[0.0, 1.0], [1.0, 0.0]]), reg=0.1)
    >>> res.status, round(res.value_linear, 6)
    ('converged', 0.0)
    """
    if reg is None:
        raise ValueError("`reg` is required (neural_ot solves regularised OT; use ot.emd for the unregularised problem)")
    return solve_discrete(
        a, b, M, reg, reg_type, mask, tol, max_iter, verbose=verbose, potentials_init=potentials_init, unbalanced=unbalanced
    )
