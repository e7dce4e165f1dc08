r"""Regularisers of the transport plan, in the density-based convention of the paper.

For a plan :math:`T = a b^\top \odot H` with density :math:`H`, the regularised primal is

.. math:: \min_{T \in U(a, b)} \langle C, T \rangle + \varepsilon \sum_{ij} a_i b_j \, \phi(H_{ij}),

with :math:`\phi(h) = h^2` for ``"l2"`` (the paper's Eq. 3-4) and :math:`\phi(h) = h \log h - h + 1`
for ``"entropic"`` (KL to :math:`a b^\top`). Its dual (Eq. 5) is

.. math:: \max_{u, v} \sum_i a_i u_i + \sum_j b_j v_j - \sum_{ij} a_i b_j m_{ij} \, \phi^*(u_i + v_j - C_{ij}),

where :math:`m` is an optional 0/1 mask (Eq. 14) and the density is :math:`H = (\phi^*)'(z)` (Eq. 6).
Each regulariser exposes :math:`\phi^*`, its first derivative (the density) and its second derivative
(the curvature used by Newton's method).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch as th

from neural_ot._validation import check_reg

RegType = Literal["l2", "entropic"]


class Regularizer(ABC):
    """Convex regulariser :math:`\\varepsilon \\phi` of the plan density.

    Parameters
    ----------
    reg : float
        Regularisation strength :math:`\\varepsilon > 0` (the paper's :math:`\\lambda`).
    """

    name: str = ""

    def __init__(self, reg: float) -> None:
        self.reg = check_reg(reg)

    @abstractmethod
    def conjugate(self, z: th.Tensor) -> th.Tensor:
        """Per-pair dual penalty :math:`\\varepsilon\\phi^*(z / \\varepsilon)`, with ``z = u + v - C``."""

    @abstractmethod
    def density(self, z: th.Tensor) -> th.Tensor:
        """Plan density ``H`` (the compatibility function) for ``z = u + v - C``."""

    @abstractmethod
    def inverse_density(self, h: th.Tensor) -> th.Tensor:
        """Return the ``z`` at which :meth:`density` equals ``h > 0``."""

    @abstractmethod
    def curvature(self, z: th.Tensor) -> th.Tensor:
        """Return the derivative of :meth:`density` with respect to ``z``."""

    @abstractmethod
    def primal(self, density: th.Tensor) -> th.Tensor:
        """Per-pair primal penalty :math:`\\varepsilon \\phi(H)`."""

    @abstractmethod
    def row_potential(self, w: th.Tensor, b: th.Tensor) -> th.Tensor:
        """Return the ``u_i`` with ``sum_j b_ij density(u_i - w_ij) = 1`` for every row (the smooth c-transform).

        Parameters
        ----------
        w : torch.Tensor of shape (n, m)
            ``C_ij - v_j``.
        b : torch.Tensor of shape (n, m)
            Non-negative column weights per row (``b_j``, times a 0/1 mask); each row must have positive mass.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reg={self.reg:g})"


class SquaredL2(Regularizer):
    """Density-based squared L2 regulariser (Dessein et al. 2018; the paper's Eq. 4)."""

    name = "l2"

    def conjugate(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.relu(z).square() / (4.0 * self.reg)

    def density(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.relu(z) / (2.0 * self.reg)

    def inverse_density(self, h: th.Tensor) -> th.Tensor:  # noqa: D102
        return 2.0 * self.reg * h

    def curvature(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return (z > 0).to(z.dtype) / (2.0 * self.reg)

    def primal(self, density: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * density.square()

    def row_potential(self, w: th.Tensor, b: th.Tensor) -> th.Tensor:  # noqa: D102
        # f(u) = sum_j b_j (u - w_j)_+ is increasing and piecewise linear: with the w_j sorted, the root lies past
        # the k breakpoints where f < 2 eps, and there u = (2 eps + sum_{<=k} b w) / sum_{<=k} b. Zero-weight
        # entries (masked) change neither sum, so they need no special case wherever they sort.
        w_sorted, order = th.sort(w, dim=1)
        bs = b.gather(1, order)
        mass = th.cumsum(bs, 1)
        first = th.cumsum(bs * w_sorted, 1)
        below = (w_sorted * mass - first < 2.0 * self.reg).sum(1, keepdim=True).clamp_min(1)
        k = below - 1
        return ((2.0 * self.reg + first.gather(1, k)) / mass.gather(1, k)).squeeze(1)


class Entropic(Regularizer):
    """Relative entropy to the product measure :math:`a b^\\top` (Cuturi 2013)."""

    name = "entropic"

    def conjugate(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * th.expm1(z / self.reg)

    def density(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.exp(z / self.reg)

    def inverse_density(self, h: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * th.log(h)

    def curvature(self, z: th.Tensor) -> th.Tensor:  # noqa: D102
        return th.exp(z / self.reg) / self.reg

    def primal(self, density: th.Tensor) -> th.Tensor:  # noqa: D102
        return self.reg * (th.xlogy(density, density) - density + 1.0)

    def row_potential(self, w: th.Tensor, b: th.Tensor) -> th.Tensor:  # noqa: D102
        # sum_j b_j exp((u - w_j) / eps) = 1, in the log domain (log 0 = -inf drops masked entries).
        return -self.reg * th.logsumexp(th.log(b) - w / self.reg, dim=1)


_REGULARIZERS: dict[str, type[Regularizer]] = {"l2": SquaredL2, "entropic": Entropic}


def get_regularizer(reg: float, reg_type: str = "l2") -> Regularizer:
    """Build the regulariser named by ``reg_type`` (``"l2"`` or ``"entropic"``).

    Parameters
    ----------
    reg : float
        Regularisation strength, positive.
    reg_type : str
        ``"l2"`` or ``"entropic"`` (``"kl"`` is accepted as an alias of ``"entropic"``).

    Returns
    -------
    Regularizer
    """
    key = {"kl": "entropic"}.get(str(reg_type).lower(), str(reg_type).lower())
    if key not in _REGULARIZERS:
        raise ValueError(f"`reg_type` must be one of {sorted(_REGULARIZERS)}, got {reg_type!r}")
    return _REGULARIZERS[key](reg)
