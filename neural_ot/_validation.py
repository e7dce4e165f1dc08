"""Input checks shared by the solvers (private). Each raises with the argument's name."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch as th
from scipy.sparse.csgraph import maximum_flow


def check_on_device(condition: th.Tensor, message: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error(message)`` unless the boolean tensor ``condition`` holds.

    On the CPU it is checked at once; on an accelerator it is asserted on the device (``torch._assert_async``), so the
    host does not wait for it, and a failure surfaces at the next synchronisation.
    """
    if condition.device.type == "cpu":
        if not bool(condition):
            raise error(message)
    else:
        th._assert_async(condition, message)


def check_matrix(M: th.Tensor, name: str = "M") -> None:
    """Check that ``M`` is a finite 2-D matrix."""
    if M.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D matrix, got shape {tuple(M.shape)}")
    if M.shape[0] == 0 or M.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {tuple(M.shape)}")
    # A finite sum proves every entry finite (NaN and inf propagate) without an (n, m) temporary; a sum that
    # overflows from finite entries falls back to the entry-wise check.
    if not bool(th.isfinite(M.sum())) and not bool(th.isfinite(M).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values")


def check_weights(w: th.Tensor, n: int, name: str, what: str = "the cost matrix has") -> None:
    """Check that ``w`` is a finite, non-negative vector of length ``n`` with positive mass.

    ``what`` names what fixes ``n`` in the length error (by default, the cost matrix's side).
    """
    if w.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D vector, got shape {tuple(w.shape)}")
    if w.shape[0] != n:
        raise ValueError(f"`{name}` has length {w.shape[0]} but {what} {n} points")
    if not bool(th.isfinite(w).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values")
    if bool((w < 0).any()):
        raise ValueError(f"`{name}` has negative weights")
    if float(w.sum()) <= 0:
        raise ValueError(f"`{name}` has zero total mass")


def check_equal_mass(a: th.Tensor, b: th.Tensor, rtol: float = 1e-6) -> None:
    """Check that both marginals carry the same total mass, up to a relative difference ``rtol``."""
    sa, sb = float(a.sum()), float(b.sum())
    if abs(sa - sb) > rtol * max(sa, sb):
        raise ValueError(
            f"`a` and `b` must have equal total mass (relative difference at most {rtol:g}), got {sa:.15g} and "
            f"{sb:.15g}: a larger mismatch can never meet the marginal tolerance"
        )


def check_reg(reg: float, name: str = "reg") -> float:
    """Check that the regularisation strength is a positive finite number."""
    try:
        value = float(reg)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{name}` must be a positive float, got {reg!r}") from e
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be positive and finite, got {reg!r}")
    return value


def check_reg_resolvable(reg: float, reg_type: str, magnitude: float, n: int, m: int) -> None:
    """Raise when float64 cannot resolve the plan's density at ``reg`` on costs of this ``magnitude``.

    ``u + v - M`` is rounded to about ``2.2e-16 * magnitude``. The L2 density divides it by ``2 reg``, and on its
    support it is at most about ``min(n, m)`` (a sparse plan); the entropic one exponentiates it over ``reg``. Where
    the rounding is that large, every plan is rounding noise: at ``reg = 1e-50`` a 200 x 150 problem ended its 500
    Newton iterations at a marginal error of 2e28.
    """
    scale = 2.0 * reg * min(n, m) if reg_type == "l2" else reg
    resolution = float(np.finfo(np.float64).eps) * magnitude / scale
    if resolution > 1.0:
        where = "2 reg min(n, m), the largest u + v - M on a plan's support" if reg_type == "l2" else "reg"
        raise ValueError(
            f"`reg`={reg:g} is too small for float64 on costs of magnitude {magnitude:.3g}: u + v - M is rounded to "
            f"{resolution:.1e} times {where}, so no plan can be computed. reg >= {reg * resolution * 1e6:.1e} keeps "
            "that rounding below 1e-6 (for the unregularised plan, use an exact LP solver such as POT's ot.emd)"
        )


def check_mask(
    mask: th.Tensor, shape: tuple[int, int], name: str = "mask", empty_ok: tuple[bool, bool] = (False, False)
) -> None:
    """Check a 0/1 mask of the right shape with no all-zero row or column.

    ``empty_ok``: whether all-zero rows, columns are allowed (a relaxed marginal, whose points may carry no mass).
    """
    if tuple(mask.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"`{name}` must contain only 0 and 1")
    empty_rows = th.nonzero(mask.sum(1) == 0).flatten()
    if empty_rows.numel() and not empty_ok[0]:
        raise ValueError(f"`{name}` has all-zero rows (e.g. row {int(empty_rows[0])}): those points cannot be transported")
    empty_cols = th.nonzero(mask.sum(0) == 0).flatten()
    if empty_cols.numel() and not empty_ok[1]:
        raise ValueError(f"`{name}` has all-zero columns (e.g. column {int(empty_cols[0])})")


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Check an integer option such as a batch size or number of steps."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def check_masked_feasibility(a: th.Tensor, b: th.Tensor, mask: th.Tensor, rtol: float = 1e-6) -> None:
    """Check that a transport plan supported on ``mask`` exists (up to a relative mass error ``rtol``).

    Exclusive pairs (a row and a column allowed only to each other, as the keypoint pairs of a KPG mask)
    must carry equal masses; beyond those, a max-flow through the mask's support must carry all the mass.
    """
    row_single = mask.sum(1) == 1
    col_single = mask.sum(0) == 1
    rows = th.nonzero(row_single).flatten()
    cols = mask[rows].argmax(1) if rows.numel() else rows
    exclusive = col_single[cols]
    rows, cols = rows[exclusive], cols[exclusive]
    diff = (a[rows] - b[cols]).abs()
    # Each exclusive pair's mismatch stays in the marginal error, relative to the total mass.
    if diff.numel() and float(diff.sum()) > rtol * float(a.sum()):
        k = int(diff.argmax())
        i, j = int(rows[k]), int(cols[k])
        raise ValueError(
            f"`mask` pairs source {i} only with target {j} (a keypoint pair), but a[{i}]={float(a[i]):.6g} "
            f"!= b[{j}]={float(b[j]):.6g}: the masked problem is infeasible; give matched keypoints equal mass"
        )
    _check_mask_carries_the_mass(a, b, mask, rows, cols, rtol)


def _check_mask_carries_the_mass(
    a: th.Tensor, b: th.Tensor, mask: th.Tensor, ex_rows: th.Tensor, ex_cols: th.Tensor, rtol: float
) -> None:
    """Raise unless a max-flow through the mask's support carries all the mass (a plan exists iff it does)."""
    keep_r = th.ones(mask.shape[0], dtype=th.bool, device=mask.device)
    keep_c = th.ones(mask.shape[1], dtype=th.bool, device=mask.device)
    keep_r[ex_rows], keep_c[ex_cols] = False, False
    if bool((mask[keep_r][:, keep_c] > 0).all()):
        return  # exclusive pairs (checked above) plus a full block: KPG masks, feasible by inspection
    n, m = mask.shape
    rows, cols = np.nonzero(mask.detach().cpu().numpy() > 0)
    flow, need, scale, result, ca = _max_flow(a, b, rows, cols)
    if need - flow > (n + m) + rtol * need:
        sent = np.asarray(result.flow[n + m, :n].todense()).ravel()
        blocked = np.flatnonzero(sent < ca - 1)[:5].tolist()
        raise ValueError(
            f"`mask` admits no transport plan: at most {flow / scale:.6g} of the mass "
            f"{need / scale:.6g} can move along its allowed pairs; rows {blocked} cannot send all their mass "
            "(too many rows share too few allowed columns)"
        )


def _max_flow(a: th.Tensor, b: th.Tensor, rows: np.ndarray, cols: np.ndarray) -> tuple[int, int, float, Any, np.ndarray]:
    """Max-flow of the masses ``a`` to ``b`` along the pairs ``(rows, cols)``, in integer units of ``1 / scale``.

    Returns the flow, the mass to move, the scale, scipy's flow result and the integer row capacities.
    """
    n, m = len(a), len(b)
    scale = 2.0**30 / max(float(a.sum()), float(b.sum()))
    ca = np.floor(a.detach().cpu().numpy() * scale).astype(np.int64)
    cb = np.floor(b.detach().cpu().numpy() * scale).astype(np.int64)
    src, sink = n + m, n + m + 1
    graph = sp.csr_matrix(
        (
            np.concatenate([ca, np.full(len(rows), 2**30), cb]).astype(np.int32),
            (
                np.concatenate([np.full(n, src), rows, n + np.arange(m)]),
                np.concatenate([np.arange(n), n + cols, np.full(m, sink)]),
            ),
        ),
        shape=(n + m + 2, n + m + 2),
    )
    result = maximum_flow(graph, src, sink)
    return int(result.flow_value), min(int(ca.sum()), int(cb.sum())), scale, result, ca


def support_carries_the_mass(a: th.Tensor, b: th.Tensor, rows: th.Tensor, cols: th.Tensor, rtol: float = 1e-6) -> bool:
    """Whether a transport plan of marginals ``a``, ``b`` exists on the pairs ``(rows, cols)`` (by max-flow)."""
    flow, need, _, _, _ = _max_flow(a, b, rows.cpu().numpy(), cols.cpu().numpy())
    return need - flow <= (len(a) + len(b)) + rtol * need


def check_solver_arguments(args: dict[str, Any]) -> None:
    """Raise for the first invalid argument of :class:`neural_ot.StochasticDual` (its ``locals()``)."""
    potentials = args["potentials"]
    if isinstance(potentials, tuple):
        if len(potentials) != 2 or not all(isinstance(p, th.nn.Module) for p in potentials):
            raise TypeError("`potentials` as a tuple must hold two torch.nn.Module")
    elif potentials not in ("mlp", "tabular"):
        raise ValueError(f"`potentials` must be 'mlp', 'tabular' or a pair of modules, got {potentials!r}")
    check_reg(args["learning_rate"], "learning_rate")
    lr_schedule = args["lr_schedule"]
    if not (callable(lr_schedule) or lr_schedule in ("constant", "cosine")):
        raise ValueError(f"`lr_schedule` must be 'constant', 'cosine' or a callable, got {lr_schedule!r}")
    for name in ("batch_size", "steps_per_batch", "max_steps", "eval_every", "eval_batch_size"):
        check_positive_int(args[name], name)
    ema_decay = args["ema_decay"]
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"`ema_decay` must be in (0, 1) or None, got {ema_decay!r}")
    reg_init = args["reg_init"]
    if reg_init is not None and check_reg(reg_init, "reg_init") < args["reg"]:
        raise ValueError(f"`reg_init` ({reg_init}) must be >= `reg` ({args['reg']}) for continuation")
    if not 0.0 < args["continuation_fraction"] <= 1.0:
        raise ValueError(f"`continuation_fraction` must be in (0, 1], got {args['continuation_fraction']!r}")
    if args["tol"] is not None and not args["tol"] > 0:
        raise ValueError(f"`tol` must be positive or None, got {args['tol']!r}")
