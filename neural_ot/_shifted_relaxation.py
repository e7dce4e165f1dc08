r"""Relaxed potentials carried apart from their common shift, so that the plan's density keeps its precision.

A relaxed dual is not invariant under the balanced problem's shift ``(u + c, v - c)``: where ``rho`` is large against
``reg`` and the weights' masses differ, the optimum moves far along it (``u`` about +281 and ``v`` about -281 times
the largest cost on a 150 x 143 semi-relaxed problem at ``rho`` 1.4e10 times ``reg``), and ``u_i + v_j - C_ij``,
which must resolve a density at the scale of ``reg``, is rounded to float64's epsilon times those magnitudes: solves
stalled there at marginal errors of 2e-9 to 6e-7 (``docs/conventions.rst``). The density does not depend on the
shift, only the penalty does; so the solver carries ``(u - c, v + c)`` and ``c`` apart, in a
:class:`ShiftedRelaxation` whose penalty and target marginals are those of the whole potentials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th

from neural_ot.relaxation import MarginalRelaxation


@dataclass(frozen=True)
class ShiftedRelaxation(MarginalRelaxation):
    """A relaxation evaluated at ``(u + shift, v - shift)``: the potentials it is given are relative to ``shift``.

    Parameters
    ----------
    rho_x, rho_y : float
        As :class:`~neural_ot.relaxation.MarginalRelaxation`.
    shift : float
        The common shift carried apart: rows' potentials are ``u + shift``, columns' ``v - shift``.
    """

    shift: float = 0.0

    def penalty(self, u: th.Tensor, v: th.Tensor, a: th.Tensor, b: th.Tensor) -> th.Tensor:
        """Return the penalty at the whole potentials, less the shift's part of the dual's linear term ``a.u + b.v``.

        So that ``a.u + b.v - penalty`` (what :func:`neural_ot.duals._dual_value` computes) is the dual at the whole
        potentials.
        """
        s = self.shift
        return super().penalty(u + s, v - s, a, b) - s * (a.sum() - b.sum())

    def marginals(self, u: th.Tensor, v: th.Tensor, a: th.Tensor, b: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Return the optimum's marginals at the whole potentials, ``a (1 - (u + shift) / rho_x)`` and ``b (...)``."""
        return super().marginals(u + self.shift, v - self.shift, a, b)

    def whole(self, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Return the whole potentials ``(u + shift, v - shift)``."""
        return u + self.shift, v - self.shift


def recentred(
    u: th.Tensor, v: th.Tensor, relaxation: MarginalRelaxation, scale: float
) -> tuple[th.Tensor, th.Tensor, MarginalRelaxation]:
    """Move the potentials' common level into the relaxation's shift when it exceeds the costs' ``scale``.

    The level is half the difference of their means: after the move both have the mean of ``(u + v) / 2``, the
    costs' scale at a plan. Below ``scale`` nothing moves (moving costs a rounding of each potential, at the level of
    the costs' own), so problems whose potentials stay at the costs' scale are solved as they were.
    """
    if relaxation.balanced:
        return u, v, relaxation
    c = 0.5 * (float(u.mean()) - float(v.mean()))
    if not (math.isfinite(c) and abs(c) > scale):
        return u, v, relaxation
    shift = relaxation.shift if isinstance(relaxation, ShiftedRelaxation) else 0.0
    return u - c, v + c, ShiftedRelaxation(relaxation.rho_x, relaxation.rho_y, shift + c)


def whole_potentials(u: th.Tensor, v: th.Tensor, relaxation: MarginalRelaxation) -> tuple[th.Tensor, th.Tensor]:
    """Return ``(u, v)`` with the relaxation's shift, if it carries one, added back."""
    return relaxation.whole(u, v) if isinstance(relaxation, ShiftedRelaxation) else (u, v)
