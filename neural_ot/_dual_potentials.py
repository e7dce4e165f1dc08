"""The potentials of a stochastic dual solver: building them, their values on minibatches, EMA copies and state.

:class:`DualPotentials` is the base of :class:`neural_ot.StochasticDual`; it holds the potentials ``u`` and ``v``, their
optimiser and EMA copies, evaluates them on a minibatch (with keypoint pairs at their closed-form optimum) and saves
and restores them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch as th
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from neural_ot.costs import CostFn
from neural_ot.dual_updates import exact_minibatch_potentials
from neural_ot.duals import relative_marginal_errors
from neural_ot.minibatch import Measure, Minibatch, draw_minibatch
from neural_ot.potentials import MLPPotential, TabularPotential, make_potential
from neural_ot.regularizers import Regularizer
from neural_ot.relaxation import MarginalRelaxation
from neural_ot.sources import PointSource


class DualPotentials:
    """Potentials of a dual solver (the base of :class:`neural_ot.StochasticDual`, which sets the attributes)."""

    potentials_spec: str | tuple[nn.Module, nn.Module]
    hidden_sizes: tuple[int, ...]
    learning_rate: float
    batch_size: int
    eval_batch_size: int
    ema_decay: float | None
    device: th.device
    dtype: th.dtype
    seed: int | None
    cost: CostFn
    regularizer: Regularizer
    relaxation: MarginalRelaxation
    total_steps: int
    u: nn.Module | None
    v: nn.Module | None
    u_ema: AveragedModel | None
    v_ema: AveragedModel | None
    optimizer: th.optim.Optimizer | None
    _generator: th.Generator

    def _draw(self, mx: Measure, my: Measure, batch_size: int, generator: th.Generator | None = None) -> Minibatch:
        gen = self._generator if generator is None else generator
        return draw_minibatch(mx, my, batch_size, gen, self.device, self.dtype)

    def _build(self, mx: Measure, my: Measure, fit_statistics: bool = True) -> None:
        gen_state = th.random.get_rng_state()
        if self.seed is not None:
            th.manual_seed(self.seed)
        if isinstance(self.potentials_spec, tuple):
            u, v = self.potentials_spec
        else:
            u = make_potential(self.potentials_spec, mx.rest.dim, mx.rest.size, self.hidden_sizes)
            v = make_potential(self.potentials_spec, my.rest.dim, my.rest.size, self.hidden_sizes)
        th.random.set_rng_state(gen_state)
        self.u, self.v = u.to(self.device, self.dtype), v.to(self.device, self.dtype)
        for pot, m in ((self.u, mx), (self.v, my)):
            if fit_statistics and isinstance(pot, MLPPotential):
                _, pts = m.rest.sample(min(4096, 16 * self.batch_size), self._generator)
                pot.set_input_statistics(pts.to(self.device, self.dtype))
        params = [*self.u.parameters(), *self.v.parameters()]
        # The fused kernel (CPU and CUDA) makes a step a few times cheaper than the per-parameter loop.
        fused = bool(params) and all(q.device.type in ("cpu", "cuda") and q.is_floating_point() for q in params)
        self.optimizer = th.optim.Adam(params, lr=self.learning_rate, fused=fused or None)
        if self.ema_decay is not None:
            avg = get_ema_multi_avg_fn(self.ema_decay)
            self.u_ema = AveragedModel(self.u, multi_avg_fn=avg, use_buffers=True)
            self.v_ema = AveragedModel(self.v, multi_avg_fn=avg, use_buffers=True)

    def _values(self, pot: nn.Module, idx: th.Tensor | None, pts: th.Tensor) -> th.Tensor:
        if isinstance(pot, TabularPotential):
            if idx is None:
                raise ValueError("tabular potentials need finite point sets")
            return pot(idx)
        return pot(pts)

    def _trained_block(self, batch: Minibatch) -> Minibatch:
        # Under the mask each keypoint row and column holds one pair, a block of its own with a closed-form
        # optimum (see `potentials_on`): neural potentials are trained on the rest only, so they never have to
        # bend to the keypoint atoms. Tabular potentials have a free entry per point and keep the whole batch.
        return batch if isinstance(self.u, TabularPotential) else batch.regular()

    @th.no_grad()
    def potentials_on(
        self, batch: Minibatch, reg: Regularizer | None = None, potentials: tuple[nn.Module, nn.Module] | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """Potential values on the points of a minibatch, with the keypoint pairs at their exact optimum.

        A matched keypoint pair ``k`` of mass ``w_k`` is alone in its row and column of the masked problem, so
        its dual block is maximised when its plan entry carries the whole mass: ``H_kk = 1 / w_k``, i.e.
        ``u_k + v_k = c(x_k, y_k) + z`` with ``density(z) = 1 / w_k``. Only the sum matters; ``u_k`` keeps the
        learned value and ``v_k`` takes the rest.

        Parameters
        ----------
        batch : Minibatch
            From :meth:`sample_batch`.
        reg : Regularizer, optional
            Defaults to the solver's.
        potentials : (Module, Module), optional
            Defaults to the potentials used for evaluation (the EMA copies when enabled).

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``u`` and ``v`` at ``batch.x`` and ``batch.y``.
        """
        u, v = self._eval_potentials() if potentials is None else potentials
        reg = self.regularizer if reg is None else reg
        uu, vv = self._values(u, batch.x_idx, batch.x), self._values(v, batch.y_idx, batch.y)
        K = batch.n_keypoints
        if K and not isinstance(u, TabularPotential):
            c_kk = self.cost.paired_matrix(batch.x[:K], batch.y[:K])
            vv = vv.clone()
            vv[:K] = c_kk + reg.inverse_density(1.0 / batch.wx[:K]) - uu[:K]
        return uu, vv

    def exact_targets(
        self, batch: Minibatch, reg: Regularizer, C: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Exact minibatch potentials ``(u*, v*)`` (balanced shift) and the cost matrix of ``batch``.

        ``C``, when given, is the cost matrix of ``batch`` already computed.
        """
        with th.no_grad():
            C = self.cost.matrix(batch.x, batch.y) if C is None else C
        return (*exact_minibatch_potentials(batch, C, reg), C)

    @th.no_grad()
    def _marginal_error(self, u: nn.Module, v: nn.Module, mx: Measure, my: Measure, reg: Regularizer) -> float:
        batch = self._draw(mx, my, self.eval_batch_size)
        uu, vv = self.potentials_on(batch, reg, (u, v))
        H = reg.density(uu[:, None] + vv[None, :] - self.cost.matrix(batch.x, batch.y))
        if batch.mask is not None:
            H = H * batch.mask
        T = batch.wx[:, None] * H * batch.wy[None, :]
        return max(relative_marginal_errors(T.sum(1), T.sum(0), *self.target_marginals(batch, uu, vv)))

    def target_marginals(self, batch: Minibatch, uu: th.Tensor, vv: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Return the marginals of the optimal plan of ``batch`` given the potentials' values there.

        The weights themselves when balanced; under a relaxation, ``a (1 - u / rho_x)`` and ``b (1 - v / rho_y)``
        (:mod:`neural_ot.relaxation`), except for matched keypoint pairs of neural potentials, which keep their mass.
        """
        rows, cols = self.relaxation.marginals(uu, vv, batch.wx, batch.wy)
        K = batch.n_keypoints
        if K and not self.relaxation.balanced and not isinstance(self.u, TabularPotential):
            rows, cols = th.cat([batch.wx[:K], rows[K:]]), th.cat([batch.wy[:K], cols[K:]])
        return rows, cols

    def _eval_potentials(self) -> tuple[nn.Module, nn.Module]:
        if self.u_ema is not None and self.v_ema is not None:
            return self.u_ema.module, self.v_ema.module
        assert self.u is not None and self.v is not None
        return self.u, self.v

    @th.no_grad()
    def _update_ema(self) -> None:
        if self.u_ema is None or self.v_ema is None:
            return
        assert self.u is not None and self.v is not None
        self.u_ema.update_parameters(self.u)
        self.v_ema.update_parameters(self.v)

    def state_dict(self) -> dict[str, Any]:
        """Potentials, EMA copies and optimiser state, for checkpoints."""
        if self.u is None or self.v is None or self.optimizer is None:
            raise RuntimeError("nothing to save before the first `fit`")
        state = {
            "u": self.u.state_dict(),
            "v": self.v.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "total_steps": self.total_steps,
            "cost_scale": self.cost.scale,
            "generator": self._generator.get_state(),
        }
        if self.u_ema is not None and self.v_ema is not None:
            state["u_ema"], state["v_ema"] = self.u_ema.state_dict(), self.v_ema.state_dict()
        # A snapshot: the optimiser's state tensors are updated in place by later steps.
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Restore :meth:`state_dict` into potentials already built (by a first ``fit`` or :meth:`build`).

        Parameters
        ----------
        state : dict
            From :meth:`state_dict`.
        strict : bool
            Passed to the potentials' ``load_state_dict`` (torch's meaning).
        """
        if self.u is None or self.v is None or self.optimizer is None:
            raise RuntimeError("build the potentials first (call `build` or `fit`)")
        self.u.load_state_dict(state["u"], strict=strict)
        self.v.load_state_dict(state["v"], strict=strict)
        self.optimizer.load_state_dict(state["optimizer"])
        self.total_steps = int(state["total_steps"])
        self.cost.scale = state["cost_scale"]
        self._generator.set_state(state["generator"])
        if self.u_ema is not None and self.v_ema is not None and "u_ema" in state:
            for ema, saved in ((self.u_ema, state["u_ema"]), (self.v_ema, state["v_ema"])):
                ema.load_state_dict(saved, strict=strict)

    def build(self, x_dim: int, y_dim: int) -> None:
        """Create the potentials and the optimiser without data (before loading a state, or to warm-start).

        MLP potentials keep identity input standardisation (or the statistics in their loaded state).
        """
        dummy_x = PointSource(th.zeros(2, x_dim, dtype=self.dtype))
        dummy_y = PointSource(th.zeros(2, y_dim, dtype=self.dtype))
        self._build(Measure(dummy_x, None, None, None), Measure(dummy_y, None, None, None), fit_statistics=False)
