"""Input checks shared by the solvers (private). Each raises with the argument's name."""

from __future__ import annotations

import math

import torch as th


def check_matrix(M: th.Tensor, name: str = "M") -> None:
    """Check that ``M`` is a finite 2-D matrix."""
    if M.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D matrix, got shape {tuple(M.shape)}")
    if M.shape[0] == 0 or M.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {tuple(M.shape)}")
    if not bool(th.isfinite(M).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values")


def check_weights(w: th.Tensor, n: int, name: str) -> None:
    """Check that ``w`` is a finite, non-negative vector of length ``n`` with positive mass."""
    if w.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D vector, got shape {tuple(w.shape)}")
    if w.shape[0] != n:
        raise ValueError(f"`{name}` has length {w.shape[0]} but the cost matrix has {n} entries on that side")
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


def check_mask(mask: th.Tensor, shape: tuple[int, int], name: str = "mask") -> None:
    """Check a 0/1 mask of the right shape with no all-zero row or column."""
    if tuple(mask.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"`{name}` must contain only 0 and 1")
    empty_rows = th.nonzero(mask.sum(1) == 0).flatten()
    if empty_rows.numel():
        raise ValueError(f"`{name}` has all-zero rows (e.g. row {int(empty_rows[0])}): those points cannot be transported")
    empty_cols = th.nonzero(mask.sum(0) == 0).flatten()
    if empty_cols.numel():
        raise ValueError(f"`{name}` has all-zero columns (e.g. column {int(empty_cols[0])})")


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Check an integer option such as a batch size or number of steps."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def check_masked_feasibility(a: th.Tensor, b: th.Tensor, mask: th.Tensor, rtol: float = 1e-6) -> None:
    """Check the masses of exclusive pairs (a row and a column allowed only to each other) agree.

    A keypoint mask makes each matched pair exclusive, so the transport problem is feasible only if
    each source keypoint and its target carry the same mass.
    """
    row_single = mask.sum(1) == 1
    col_single = mask.sum(0) == 1
    if not bool(row_single.any()):
        return
    rows = th.nonzero(row_single).flatten()
    cols = mask[rows].argmax(1)
    exclusive = col_single[cols]
    rows, cols = rows[exclusive], cols[exclusive]
    diff = (a[rows] - b[cols]).abs()
    # Each exclusive pair's mismatch stays in the marginal error, relative to the total mass.
    bad = diff > 0
    if bool(bad.any()) and float(diff.sum()) > rtol * float(a.sum()):
        k = int(diff.argmax())
        i, j = int(rows[k]), int(cols[k])
        raise ValueError(
            f"`mask` pairs source {i} only with target {j} (a keypoint pair), but a[{i}]={float(a[i]):.6g} "
            f"!= b[{j}]={float(b[j]):.6g}: the masked problem is infeasible; give matched keypoints equal mass"
        )
