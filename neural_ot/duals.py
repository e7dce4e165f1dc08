r"""Dual objectives, compatibility density and plan recovery as pure functions.

These are the primitives of the paper's Eq. 5, 6, 14 and 15, for any potentials: tensors of values,
or ``torch.nn.Module`` potentials evaluated on the points ``x`` and ``y``. They are differentiable,
so a training loop can maximise :func:`dual_objective` directly (cf. POT's ``loss_dual_entropic``).
"""

from __future__ import annotations

import torch as th
from torch import nn

from neural_ot._arrays import ArrayLike, is_numpy, to_output, to_tensor
from neural_ot._validation import check_on_device
from neural_ot.regularizers import Regularizer, get_regularizer
from neural_ot.relaxation import BALANCED, MarginalRelaxation, get_relaxation


def potential_values(potential: th.Tensor | nn.Module, points: th.Tensor | None, name: str) -> th.Tensor:
    """Values of a potential: the tensor itself, or the module evaluated on ``points``.

    Parameters
    ----------
    potential : torch.Tensor or torch.nn.Module
        Vector of values, or a module mapping points ``(n, d)`` to values ``(n,)`` or ``(n, 1)``.
    points : torch.Tensor or None
        Required when ``potential`` is a module.
    name : str
        Argument name used in error messages.

    Returns
    -------
    torch.Tensor of shape (n,)
    """
    if isinstance(potential, nn.Module):
        if points is None:
            raise ValueError(f"`{name}` is a module: pass the points it is evaluated on")
        values = potential(points)
    elif isinstance(potential, th.Tensor):
        values = potential
    else:
        raise TypeError(f"`{name}` must be a tensor or a torch.nn.Module, got {type(potential).__name__}")
    return values.reshape(values.shape[0], -1).squeeze(1) if values.ndim > 1 else values


def _uniform(n: int, like: th.Tensor) -> th.Tensor:
    return th.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def _weights(w: ArrayLike | None, n: int, like: th.Tensor, name: str) -> th.Tensor:
    """Weights as a tensor like ``like``, uniform when ``w`` is None."""
    return _uniform(n, like) if w is None else to_tensor(w, name, like.dtype, like.device)


def _z(u: th.Tensor, v: th.Tensor, M: th.Tensor) -> th.Tensor:
    if M.ndim != 2 or M.shape[0] == 0 or M.shape[1] == 0:
        raise ValueError(f"`M` must be a non-empty (n, m) matrix, got shape {tuple(M.shape)}")
    if u.shape[0] != M.shape[0] or v.shape[0] != M.shape[1]:
        raise ValueError(f"potentials of lengths {u.shape[0]}, {v.shape[0]} do not match `M` of shape {tuple(M.shape)}")
    return u[:, None] + v[None, :] - M


def dual_objective(
    u: th.Tensor | nn.Module,
    v: th.Tensor | nn.Module,
    M: th.Tensor,
    reg: float,
    a: th.Tensor | None = None,
    b: th.Tensor | None = None,
    mask: th.Tensor | None = None,
    reg_type: str = "l2",
    x: th.Tensor | None = None,
    y: th.Tensor | None = None,
    unbalanced: float | tuple[float, float] | None = None,
) -> th.Tensor:
    r"""Regularised (and optionally masked, or unbalanced) dual objective, to be maximised.

    .. math:: \sum_i a_i u_i + \sum_j b_j v_j - \sum_{ij} a_i b_j m_{ij} \phi^*(u_i + v_j - M_{ij})

    with :math:`\phi^*(z) = z_+^2 / (4\varepsilon)` for ``"l2"`` (Eq. 5, 14) and
    :math:`\varepsilon(e^{z/\varepsilon} - 1)` for ``"entropic"``.

    Parameters
    ----------
    u, v : torch.Tensor or torch.nn.Module
        Potentials (values, or modules evaluated on ``x`` and ``y``).
    M : torch.Tensor of shape (n, m)
        Cost matrix.
    reg : float
        Regularisation strength :math:`\varepsilon`.
    a, b : torch.Tensor, optional
        Weights; uniform when omitted. On minibatches, uniform weights give the Monte-Carlo estimate.
    mask : torch.Tensor of shape (n, m), optional
        0/1 mask; masked-out pairs carry no mass.
    reg_type : {"l2", "entropic"}
    x, y : torch.Tensor, optional
        Points for module potentials.
    unbalanced : float or (float, float), optional
        Quadratic relaxation of the marginals (:mod:`neural_ot.relaxation`): subtracts
        :math:`\sum_i a_i u_i^2 / (2\rho_x) + \sum_j b_j v_j^2 / (2\rho_y)`. ``None``: balanced;
        ``(inf, rho)``: semi-relaxed.

    Returns
    -------
    torch.Tensor
        Scalar objective.
    """
    if not isinstance(M, th.Tensor):
        raise TypeError(
            f"`M` must be a torch.Tensor (dual_objective is differentiable), got {type(M).__name__}: "
            "convert it with torch.as_tensor"
        )
    regularizer = get_regularizer(reg, reg_type)
    uu, vv = potential_values(u, x, "u"), potential_values(v, y, "v")
    for name, t in (("u", uu), ("v", vv), ("a", a), ("b", b), ("mask", mask)):
        if t is not None and not isinstance(t, th.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor like `M`, got {type(t).__name__}")
        if t is not None and t.dtype != M.dtype:
            raise TypeError(f"`{name}` has dtype {t.dtype} but `M` has {M.dtype}: use one floating dtype")
    a = _uniform(M.shape[0], M) if a is None else a
    b = _uniform(M.shape[1], M) if b is None else b
    return _dual_value(uu, vv, M, regularizer, a, b, mask, get_relaxation(unbalanced))


def _dual_value(
    u: th.Tensor,
    v: th.Tensor,
    M: th.Tensor,
    regularizer: Regularizer,
    a: th.Tensor,
    b: th.Tensor,
    mask: th.Tensor | None,
    relaxation: MarginalRelaxation = BALANCED,
) -> th.Tensor:
    """Evaluate the dual objective of :func:`dual_objective` on validated tensors (values, weights, regulariser)."""
    penalty = regularizer.conjugate(_z(u, v, M))
    if mask is not None:
        penalty = penalty * mask
    value = a @ u + b @ v - a @ penalty @ b
    return value if relaxation.balanced else value - relaxation.penalty(u, v, a, b)


def c_transform(
    v: ArrayLike,
    M: ArrayLike,
    reg: float,
    b: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    reg_type: str = "l2",
) -> ArrayLike:
    r"""Smooth c-transform: the row potential that maximises the dual for a given ``v``.

    For each row, the ``u_i`` with :math:`\sum_j b_j m_{ij} H(u_i + v_j - M_{ij}) = 1`: the plan
    :math:`a_i b_j H_{ij}` then has exactly the row marginal ``a`` (whatever ``a`` is), and the dual is maximised
    over ``u`` with ``v`` fixed (the semi-dual of Genevay et al. 2016). For ``"l2"`` this is the root of a
    piecewise-linear function, found exactly by sorting; for ``"entropic"`` it is
    :math:`-\varepsilon \log \sum_j b_j m_{ij} e^{(v_j - M_{ij})/\varepsilon}`.

    Parameters
    ----------
    v : array-like of shape (m,)
        Column potential.
    M : array-like of shape (n, m)
        Cost matrix.
    reg : float
        :math:`\varepsilon`.
    b : array-like of shape (m,), optional
        Column weights (uniform when omitted).
    mask : array-like of shape (n, m), optional
        0/1 mask; every row must keep at least one column of positive weight.
    reg_type : {"l2", "entropic"}

    Returns
    -------
    array of shape (n,)
        Same kind (numpy or torch) and dtype as ``M``; differentiable in ``v`` and ``M`` for torch input.
    """
    regularizer = get_regularizer(reg, reg_type)
    Mt = to_tensor(M, "M")
    if Mt.ndim != 2:
        raise ValueError(f"`M` must be a matrix (n, m), got shape {tuple(Mt.shape)}")
    vt = to_tensor(v, "v", Mt.dtype, Mt.device).reshape(-1)
    if vt.shape[0] != Mt.shape[1]:
        raise ValueError(f"`v` has {vt.shape[0]} entries but `M` has {Mt.shape[1]} columns")
    # The L2 row roots come from sorted rows, where a NaN gave a finite, wrong potential instead of NaN.
    check_on_device(th.isfinite(vt).all() & ~th.isnan(Mt).any(), "`v` contains NaN or infinite values, or `M` NaN values")
    bt = _weights(b, Mt.shape[1], Mt, "b").reshape(-1)
    if bt.shape[0] != Mt.shape[1]:
        raise ValueError(f"`b` must be {Mt.shape[1]} non-negative weights")
    check_on_device((bt >= 0).all(), f"`b` must be {Mt.shape[1]} non-negative weights")
    keep = None
    row_mass = bt[None, :].expand_as(Mt)
    if mask is not None:
        maskt = to_tensor(mask, "mask", Mt.dtype, Mt.device)
        if maskt.shape != Mt.shape:
            raise ValueError(f"`mask` must have the shape of `M` {tuple(Mt.shape)}, got {tuple(maskt.shape)}")
        keep = maskt > 0
        row_mass = row_mass * keep
    check_on_device(
        (row_mass.sum(1) > 0).all(),
        "a row of `M` has no column of positive weight (check `b` and `mask`): its c-transform is undefined",
    )
    u = regularizer.row_potential(Mt - vt[None, :], bt, keep)
    return to_output(u, is_numpy(M), Mt.dtype)


def relative_marginal_errors(rows: th.Tensor, cols: th.Tensor, a: th.Tensor, b: th.Tensor) -> tuple[float, float]:
    """Relative L1 errors ``(||rows - a||_1 / ||a||_1, ||cols - b||_1 / ||b||_1)`` of a plan's marginals.

    Parameters
    ----------
    rows, cols : torch.Tensor of shape (n,), (m,)
        Row and column sums of the plan.
    a, b : torch.Tensor of shape (n,), (m,)
        The target marginals.

    Returns
    -------
    tuple of float
    """
    return float((rows - a).abs().sum() / a.sum()), float((cols - b).abs().sum() / b.sum())


def density(
    u: ArrayLike,
    v: ArrayLike,
    M: ArrayLike,
    reg: float,
    reg_type: str = "l2",
    mask: ArrayLike | None = None,
) -> ArrayLike:
    r"""Compatibility function :math:`H = (u_i + v_j - M_{ij})_+ / (2\varepsilon)` (Eq. 6, 15), masked if asked.

    Parameters
    ----------
    u, v : array-like of shape (n,), (m,)
    M : array-like of shape (n, m)
    reg : float
    reg_type : {"l2", "entropic"}
        For ``"entropic"``, :math:`H = \exp((u_i + v_j - M_{ij})/\varepsilon)`.
    mask : array-like of shape (n, m), optional

    Returns
    -------
    array of shape (n, m)
        Same kind (numpy or torch) and dtype as ``M``.
    """
    Mt = to_tensor(M, "M")
    ut, vt = to_tensor(u, "u", Mt.dtype, Mt.device), to_tensor(v, "v", Mt.dtype, Mt.device)
    H = get_regularizer(reg, reg_type).density(_z(ut, vt, Mt))
    if not bool(th.isfinite(H).all()):
        for name, t in (("u", ut), ("v", vt), ("M", Mt)):
            if bool(th.isnan(t).any()) or (name != "M" and not bool(th.isfinite(t).all())):
                raise ValueError(f"`{name}` contains NaN" + (" values" if name == "M" else " or infinite values"))
        raise FloatingPointError(
            f"the density overflowed (exp((u + v - M) / reg) with reg={reg}): the potentials are far from a "
            "solution of this problem, or `reg` is too small for this cost scale"
        )
    if mask is not None:
        H = H * to_tensor(mask, "mask", Mt.dtype, Mt.device)
    return to_output(H, is_numpy(M), Mt.dtype)


def plan(
    u: ArrayLike,
    v: ArrayLike,
    M: ArrayLike,
    reg: float,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    reg_type: str = "l2",
    mask: ArrayLike | None = None,
) -> ArrayLike:
    """Transport plan :math:`T_{ij} = a_i b_j H_{ij}` recovered from potentials.

    Parameters are as in :func:`density`, with weights ``a`` and ``b`` (uniform when omitted).

    Returns
    -------
    array of shape (n, m)
    """
    Mt = to_tensor(M, "M")
    H = to_tensor(density(u, v, Mt, reg, reg_type, mask), "H")
    at, bt = _weights(a, Mt.shape[0], Mt, "a"), _weights(b, Mt.shape[1], Mt, "b")
    return to_output(at[:, None] * H * bt[None, :], is_numpy(M), Mt.dtype)


def plan_marginals(
    u: ArrayLike,
    v: ArrayLike,
    M: ArrayLike,
    reg: float,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    reg_type: str = "l2",
    mask: ArrayLike | None = None,
    chunk_size: int = 4096,
) -> tuple[ArrayLike, ArrayLike]:
    """Row and column sums of the plan, computed over row chunks without forming the whole plan.

    Parameters are as in :func:`plan`; ``chunk_size`` rows are processed at a time.

    Returns
    -------
    (array of shape (n,), array of shape (m,))
    """
    regularizer = get_regularizer(reg, reg_type)
    Mt = to_tensor(M, "M")
    ut, vt = to_tensor(u, "u", Mt.dtype, Mt.device), to_tensor(v, "v", Mt.dtype, Mt.device)
    at, bt = _weights(a, Mt.shape[0], Mt, "a"), _weights(b, Mt.shape[1], Mt, "b")
    maskt = None if mask is None else to_tensor(mask, "mask", Mt.dtype, Mt.device)
    rows = th.empty_like(at)
    cols = th.zeros_like(bt)
    for i in range(0, Mt.shape[0], chunk_size):
        sl = slice(i, i + chunk_size)
        H = regularizer.density(_z(ut[sl], vt, Mt[sl]))
        if maskt is not None:
            H = H * maskt[sl]
        rows[sl] = at[sl] * (H @ bt)
        cols += bt * (at[sl] @ H)
    as_numpy = is_numpy(M)
    return to_output(rows, as_numpy, Mt.dtype), to_output(cols, as_numpy, Mt.dtype)
