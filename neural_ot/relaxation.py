r"""Relaxed marginals (unbalanced and semi-relaxed OT) with a quadratic penalty, in the density convention.

A marginal constraint :math:`T \mathbf{1} = a` can be replaced by a penalty on the plan's marginal density
:math:`q_i = (T \mathbf{1})_i / a_i` (Chizat et al. 2018; POT's ``ot.solve(..., unbalanced=...)``):

.. math:: \frac{\rho}{2} \sum_i a_i (q_i - 1)^2 .

Its convex conjugate puts a quadratic term on the potential of that side, so the dual of
:mod:`neural_ot.regularizers` becomes

.. math:: \sum_i a_i u_i + \sum_j b_j v_j - \sum_i \frac{a_i u_i^2}{2 \rho_x} - \sum_j \frac{b_j v_j^2}{2 \rho_y}
          - \sum_{ij} a_i b_j m_{ij} \phi^*(u_i + v_j - C_{ij}),

weight decay on the potential, weighted by its measure. :math:`\rho = \infty` is the exact constraint (balanced
OT); :math:`\rho \to 0` frees that side, and its potential goes to 0. At the optimum
:math:`q_i = 1 - u_i / \rho_x`: the plan's marginal is :math:`a (1 - u / \rho_x)`, the target against which
:meth:`MarginalRelaxation.marginals` measures convergence. ``unbalanced=(inf, rho)`` is the semi-relaxed problem
(rows exact, columns relaxed).

POT penalises the marginal's *mass* instead, :math:`\frac{\lambda}{2} \|T \mathbf{1} - a\|_2^2`; for uniform
weights on ``n`` points, :math:`\lambda = \rho n`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch as th

INF = math.inf


def _rho(value: Any, name: str) -> float:
    try:
        rho = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{name}` must be a positive float or inf, got {value!r}") from e
    if math.isnan(rho) or rho <= 0:
        raise ValueError(f"`{name}` must be positive (inf: the marginal is exact), got {value!r}")
    return rho


@dataclass(frozen=True)
class MarginalRelaxation:
    """Quadratic relaxation of the two marginals: strengths ``rho_x`` (rows) and ``rho_y`` (columns).

    Parameters
    ----------
    rho_x, rho_y : float
        Penalty strengths in the density convention; ``inf`` keeps that marginal exact.
    """

    rho_x: float = INF
    rho_y: float = INF

    @property
    def balanced(self) -> bool:
        """Whether both marginals are exact."""
        return self.rho_x == INF and self.rho_y == INF

    def penalty(self, u: th.Tensor, v: th.Tensor, a: th.Tensor, b: th.Tensor) -> th.Tensor:
        r"""Return :math:`\sum_i a_i u_i^2 / (2\rho_x) + \sum_j b_j v_j^2 / (2\rho_y)`, subtracted from the dual."""
        total = u.new_zeros(())
        for pot, w, rho in ((u, a, self.rho_x), (v, b, self.rho_y)):
            if rho != INF:
                total = total + (w @ pot.square()) / (2.0 * rho)
        return total

    def marginals(self, u: th.Tensor, v: th.Tensor, a: th.Tensor, b: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Return the marginals the optimal plan has for these potentials: ``a (1 - u / rho_x)``, ``b (1 - v / rho_y)``.

        ``(a, b)`` when balanced; the plan's marginals equal them exactly at the optimum.
        """
        rows = a if self.rho_x == INF else a * (1.0 - u / self.rho_x)
        cols = b if self.rho_y == INF else b * (1.0 - v / self.rho_y)
        return rows, cols


BALANCED = MarginalRelaxation()


def get_relaxation(unbalanced: float | tuple[float, float] | MarginalRelaxation | None) -> MarginalRelaxation:
    """Parse ``unbalanced`` as POT's ``ot.solve`` does: ``None`` (balanced), one strength for both sides, or a pair.

    Parameters
    ----------
    unbalanced : float, (float, float), MarginalRelaxation or None
        ``(inf, rho)`` is the semi-relaxed problem: rows exact, columns penalised with strength ``rho``.

    Returns
    -------
    MarginalRelaxation
    """
    if unbalanced is None:
        return BALANCED
    if isinstance(unbalanced, MarginalRelaxation):
        return unbalanced
    if isinstance(unbalanced, (tuple, list)):
        if len(unbalanced) != 2:
            raise ValueError(f"`unbalanced` as a sequence must hold two strengths (rows, columns), got {unbalanced!r}")
        return MarginalRelaxation(_rho(unbalanced[0], "unbalanced[0]"), _rho(unbalanced[1], "unbalanced[1]"))
    rho = _rho(unbalanced, "unbalanced")
    return MarginalRelaxation(rho, rho)
