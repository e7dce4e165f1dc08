"""Sinkhorn sweeps that start an entropic Newton stage while they converge fast (:mod:`neural_ot._newton`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

from neural_ot._dual_problem import _Problem

_SINKHORN_SWEEPS = 1000  # at most this many Sinkhorn iterations before Newton (entropic problems)


def sinkhorn_sweeps(prob: _Problem, u: th.Tensor, v: th.Tensor, tol: float) -> tuple[th.Tensor, th.Tensor, float]:
    """Sinkhorn iterations in the scaling domain around ``(u, v)`` (a stabilised kernel), while they converge fast.

    The kernel ``exp((u + v - C) / eps)`` must be bounded away from under- and overflow (see
    :func:`kernel_is_safe`, or after exact block steps), so scalings stay finite. Newton takes over when
    Sinkhorn slows down (small eps), which is where it is slow. Returns the potentials and the relative row
    marginal error of the last check (the column marginal is exact after each sweep; ``inf`` if unchecked).
    """
    eps = prob.r.reg
    K_t = prob.masked(prob.z(u, v).div_(eps).exp_())
    a_t, b_t = prob.a, prob.b
    K: Any
    a: Any
    b: Any
    finite: Any
    backend: Any
    if K_t.device.type == "cpu":
        # numpy's BLAS runs these matrix-vector products 2-3x faster than torch's on the CPU (measured at n = 1000);
        # the arrays are views of the same memory.
        K, a, b = K_t.numpy(), a_t.numpy(), b_t.numpy()
        finite, backend = np.isfinite, np
    else:
        K, a, b = K_t, a_t, b_t
        finite, backend = th.isfinite, th
    alpha, beta = backend.ones_like(a), backend.ones_like(b)
    last_err = err = float("inf")
    for it in range(1, _SINKHORN_SWEEPS + 1):
        alpha_new = 1.0 / (K @ (beta * b))
        beta_new = 1.0 / (K.T @ (alpha_new * a))
        if not (bool(finite(alpha_new).all()) and bool(finite(beta_new).all())):
            err = float("inf")
            break
        alpha, beta = alpha_new, beta_new
        prob.sinkhorn_sweeps += 1
        err = float("inf")
        if it % 10 == 0:
            err = float(abs(a * alpha * (K @ (beta * b)) - a).sum() / a.sum())
            if err <= tol or err > 0.9 * last_err:
                break
            last_err = err
    alpha_t, beta_t = th.as_tensor(alpha, device=u.device), th.as_tensor(beta, device=v.device)
    return u + eps * th.log(alpha_t), v + eps * th.log(beta_t), err


def kernel_is_safe(prob: _Problem) -> bool:
    """Whether ``exp((min C - C) / eps)`` and its Sinkhorn scalings stay far from the float64 limits."""
    lo, hi = prob.cost_range
    return prob.C.dtype == th.float64 and (hi - lo) / prob.r.reg < 200.0
