r"""How a stochastic dual solver moves its potentials on one minibatch (the ``method`` of the solvers).

Each rule turns the potentials' values on a minibatch and its cost matrix into a loss for the optimiser and
the minibatch dual objective. The cost matrix (and whatever the rule derives from it once, such as exact
targets) is shared by the ``steps_per_batch`` optimiser steps on one minibatch.

- :class:`GradientAscent` (``"gradient"``): the minibatch dual itself (Seguy et al. 2018).
- :class:`ExactRegression` (``"exact"``): squared distance to the exact minibatch potentials of
  :func:`~neural_ot.solve_discrete` (amortisation). The exact potentials are defined up to
  :math:`(u + t, v - t)`; the target fixes :math:`t` so that both sides have the same weighted mean.
- :class:`SemiDual` (``"semi-dual"``): ``v`` ascends the semi-dual, the dual with ``u`` replaced by the
  smooth c-transform of ``v`` on the minibatch (Genevay et al. 2016), so every row of the minibatch plan has
  exactly its mass; ``u`` regresses onto that c-transform, so that it can be evaluated at new points
  (collection, new states). By the envelope theorem the semi-dual's gradient in ``v`` is the dual's gradient
  at fixed ``u`` = the c-transform, so no gradient flows through the sort.

A rule carries the problem's :class:`~neural_ot.relaxation.MarginalRelaxation`: gradient ascent takes any;
the semi-dual keeps the rows exact (its ``u`` is the c-transform), so it takes a relaxed column marginal only;
the exact regression stays balanced (its targets are shifted along the balanced dual's free direction ``(u + t, v - t)``,
which a relaxed dual does not have, and keypoint columns would be relaxed too).
"""

from __future__ import annotations

import math
from typing import Any

import torch as th

from neural_ot.discrete import solve_discrete
from neural_ot.duals import _dual_value
from neural_ot.minibatch import Minibatch
from neural_ot.regularizers import Regularizer
from neural_ot.relaxation import BALANCED, MarginalRelaxation


class DualUpdate:
    """A minibatch update rule: ``prepare`` once per minibatch, then ``loss`` at each optimiser step.

    Parameters
    ----------
    relaxation : MarginalRelaxation
        The marginals' relaxation (balanced by default).
    """

    name = ""

    def __init__(self, relaxation: MarginalRelaxation = BALANCED) -> None:
        self.relaxation = relaxation

    def _objective(self, uu: th.Tensor, vv: th.Tensor, C: th.Tensor, batch: Minibatch, reg: Regularizer) -> th.Tensor:
        return _dual_value(uu, vv, C, reg, batch.wx, batch.wy, batch.mask, self.relaxation)

    def prepare(self, batch: Minibatch, C: th.Tensor, reg: Regularizer) -> Any:
        """Return what the steps on this minibatch share beyond its cost matrix (``None`` by default)."""
        return None

    def loss(
        self, uu: th.Tensor, vv: th.Tensor, C: th.Tensor, batch: Minibatch, reg: Regularizer, prepared: Any
    ) -> tuple[th.Tensor, th.Tensor]:
        """Return ``(loss to minimise, minibatch dual objective)`` for potential values ``uu``, ``vv``."""
        raise NotImplementedError


class GradientAscent(DualUpdate):
    """Gradient ascent on the minibatch dual."""

    name = "gradient"

    def loss(  # noqa: D102
        self, uu: th.Tensor, vv: th.Tensor, C: th.Tensor, batch: Minibatch, reg: Regularizer, prepared: Any
    ) -> tuple[th.Tensor, th.Tensor]:
        obj = self._objective(uu, vv, C, batch, reg)
        return -obj, obj


def exact_minibatch_potentials(batch: Minibatch, C: th.Tensor, reg: Regularizer) -> tuple[th.Tensor, th.Tensor]:
    """Exact potentials ``(u*, v*)`` of a minibatch problem, shifted so both sides have the same weighted mean."""
    with th.no_grad():
        mask = None if batch.mask is None else batch.mask.double()
        wx, wy = batch.wx.double(), batch.wy.double()
        wy = wy * (wx.sum() / wy.sum())  # float32 weights: equal masses in float64
        res = solve_discrete(wx, wy, C.double(), reg.reg, reg.name, mask=mask, tol=1e-6)
        u_star, v_star = th.as_tensor(res.u), th.as_tensor(res.v)
        shift = 0.5 * (batch.wx.double() @ u_star - batch.wy.double() @ v_star)
        return (u_star - shift).to(C.dtype), (v_star + shift).to(C.dtype)


class ExactRegression(DualUpdate):
    """Regression onto the exact minibatch potentials."""

    name = "exact"

    def __init__(self, relaxation: MarginalRelaxation = BALANCED) -> None:
        if not relaxation.balanced:
            raise ValueError(
                "`method='exact'` regresses onto the balanced minibatch optimum of solve_discrete: use "
                "'gradient' or 'semi-dual' with `unbalanced`"
            )
        super().__init__(relaxation)

    def prepare(self, batch: Minibatch, C: th.Tensor, reg: Regularizer) -> tuple[th.Tensor, th.Tensor]:  # noqa: D102
        return exact_minibatch_potentials(batch, C, reg)

    def loss(  # noqa: D102
        self, uu: th.Tensor, vv: th.Tensor, C: th.Tensor, batch: Minibatch, reg: Regularizer, prepared: Any
    ) -> tuple[th.Tensor, th.Tensor]:
        u_star, v_star = prepared
        loss = batch.wx @ (uu - u_star).square() + batch.wy @ (vv - v_star).square()
        with th.no_grad():
            obj = _dual_value(uu, vv, C, reg, batch.wx, batch.wy, batch.mask)
        return loss, obj


def minibatch_c_transform(vv: th.Tensor, C: th.Tensor, batch: Minibatch, reg: Regularizer) -> th.Tensor:
    """Return the smooth c-transform of ``vv`` on a minibatch: the ``u`` that gives each row of its plan its mass."""
    with th.no_grad():
        return reg.row_potential(C - vv[None, :], batch.wy, None if batch.mask is None else batch.mask > 0)


class SemiDual(DualUpdate):
    """Semi-dual ascent in ``v``, with ``u`` regressed onto the minibatch c-transform of ``v``."""

    name = "semi-dual"

    def __init__(self, relaxation: MarginalRelaxation = BALANCED) -> None:
        if relaxation.rho_x != math.inf:
            raise ValueError(
                "`method='semi-dual'` keeps the rows exact (u is the c-transform of v): relax the columns only, "
                f"`unbalanced=(inf, rho)`, or use 'gradient'; got rho_x={relaxation.rho_x}"
            )
        super().__init__(relaxation)

    def loss(  # noqa: D102
        self, uu: th.Tensor, vv: th.Tensor, C: th.Tensor, batch: Minibatch, reg: Regularizer, prepared: Any
    ) -> tuple[th.Tensor, th.Tensor]:
        u_star = minibatch_c_transform(vv.detach(), C, batch, reg)
        obj = self._objective(u_star, vv, C, batch, reg)
        # u and v have separate parameters, so one loss serves both: ascent for v, regression for u.
        return batch.wx @ (uu - u_star).square() - obj, obj.detach()


UPDATES: dict[str, type[DualUpdate]] = {rule.name: rule for rule in (GradientAscent, ExactRegression, SemiDual)}


def get_update(method: str, relaxation: MarginalRelaxation = BALANCED) -> DualUpdate:
    """Return the update rule named ``method`` (``"gradient"``, ``"exact"`` or ``"semi-dual"``) for ``relaxation``."""
    if method not in UPDATES:
        raise ValueError(f"`method` must be one of {sorted(UPDATES)}, got {method!r}")
    return UPDATES[method](relaxation)
