r"""Stochastic minibatch solvers of the regularised (and keypoint-masked) OT dual.

The dual (Eq. 5, 14) is an expectation over :math:`\mu \times \nu`, so it can be maximised by
stochastic gradient ascent on minibatches, with tabular potentials on finite sets or neural
potentials on continuous measures (Seguy et al. 2018; the paper's Algorithm 2). Memory grows with the
batch, not with the data.

With keypoints, every minibatch also contains all matched keypoint pairs (Algorithm 2), and the batch
is weighted so the estimate stays unbiased: keypoints enter with their own mass and the other points
share the remaining mass; the mask keeps keypoints matched only to each other. Under that mask each
keypoint pair is a block of its own, whose optimum is known in closed form (the pair carries its whole
mass, :meth:`StochasticDual.potentials_on`): neural potentials are trained on the other points only, so
they stay smooth instead of bending to reach ``H = 1 / w_k`` at isolated atoms. The keypoints still shape
the coupling of the other points through a relation cost (:class:`~neural_ot.KeypointRelationCost`).

How the potentials move on a minibatch (``method``) is a rule of :mod:`neural_ot.dual_updates`: gradient
ascent on the minibatch dual (``"gradient"``, Seguy et al. 2018), regression onto the exact minibatch
potentials (``"exact"``) or semi-dual ascent with ``u`` regressed onto the c-transform of ``v``
(``"semi-dual"``). The measures and minibatches are those of :mod:`neural_ot.minibatch`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch as th
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from neural_ot import _threads
from neural_ot._arrays import ArrayLike, resolve_device
from neural_ot._dual_potentials import DualPotentials
from neural_ot._validation import check_positive_int, check_solver_arguments
from neural_ot.compatibility import Compatibility
from neural_ot.costs import CostFn, get_cost
from neural_ot.dual_updates import get_update
from neural_ot.minibatch import Measure, Minibatch, build_measures
from neural_ot.potentials import TabularPotential
from neural_ot.regularizers import Regularizer, get_regularizer
from neural_ot.relaxation import get_relaxation
from neural_ot.results import DualResult

Callback = Callable[[dict[str, Any]], bool | None]


class StochasticDual(DualPotentials):
    r"""Stochastic solver of the regularised OT dual with tabular or neural potentials.

    Parameters
    ----------
    reg : float
        :math:`\varepsilon`, in the density-based convention (the paper's :math:`\lambda`).
    reg_type : {"l2", "entropic"}
    cost : str, CostFn or callable
        Ground cost; ``"sqeuclidean"`` by default. A cost with ``normalize="max"``/``"mean"`` has its scale
        frozen on the first batch so every minibatch sees the same problem; that happens on a copy
        (``solver.cost``), never on the object passed in.
    potentials : {"mlp", "tabular"} or (Module, Module)
        Kind of potentials, or the two modules themselves.
    hidden_sizes : sequence of int
        Hidden widths of MLP potentials (the paper: two layers).
    learning_rate : float
        Adam step size.
    lr_schedule : {"constant", "cosine"} or callable
        Multiplier of the learning rate as a function of progress in ``[0, 1]``.
    batch_size : int
        Points drawn from each measure per step (keypoints come on top).
    steps_per_batch : int
        Optimiser steps on each minibatch: its cost matrix (and, with ``method="exact"``, its exact potentials)
        is computed once and reused. Worth more than 1 when the cost is expensive (a critic network evaluated
        on every pair) and cheap steps are what is missing.
    max_steps : int
        Default number of steps of :meth:`fit`.
    ema_decay : float, optional
        Keep an exponential moving average of the potentials (used for evaluation and the result).
    reg_init : float, optional
        Start of eps-continuation: eps decays geometrically from ``reg_init`` to ``reg`` over the first
        ``continuation_fraction`` of the steps.
    continuation_fraction : float
    eval_every : int
        Steps between estimates of the marginal error (on fresh batches of ``eval_batch_size``). The estimate
        is Monte-Carlo: even the exact population potentials show an error of order
        ``1 / sqrt(eval_batch_size * fraction of pairs with H > 0)``, its noise floor.
    eval_batch_size : int
    tol : float, optional
        Stop once the estimated relative marginal error is at most ``tol`` (after continuation ends); a ``tol``
        below the estimate's noise floor (see ``eval_every``) is never reached.
    device : str
        ``"auto"`` picks CUDA when available.
    dtype : torch.dtype
    seed : int, optional
        Seeds the potentials' initialisation and the minibatch sampling.
    progress_bar : bool
        Show a tqdm progress bar.
    method : {"gradient", "exact", "semi-dual"}
        Gradient ascent on the minibatch dual, regression onto the exact minibatch potentials, or semi-dual
        ascent in ``v`` with ``u`` regressed onto the minibatch c-transform of ``v`` (see
        :mod:`neural_ot.dual_updates`).
    unbalanced : float or (float, float), optional
        Quadratic relaxation of the marginals, as in POT's ``ot.solve`` but in the density convention
        (:mod:`neural_ot.relaxation`): ``None`` is balanced OT, ``(inf, rho)`` semi-relaxed (the ``y`` marginal
        penalised with strength ``rho``). Matched keypoint pairs of neural potentials keep their whole mass; the
        relaxation applies to the other points. The marginal error then measures the distance to the marginals
        the optimum has, ``b (1 - v / rho)``.
    """

    keypoints_required = False

    def __init__(
        self,
        reg: float,
        reg_type: str = "l2",
        cost: str | CostFn | Callable[[th.Tensor, th.Tensor], th.Tensor] = "sqeuclidean",
        potentials: str | tuple[nn.Module, nn.Module] = "mlp",
        hidden_sizes: Sequence[int] = (128, 128),
        learning_rate: float = 1e-3,
        lr_schedule: str | Callable[[float], float] = "constant",
        batch_size: int = 256,
        steps_per_batch: int = 1,
        max_steps: int = 5000,
        ema_decay: float | None = None,
        reg_init: float | None = None,
        continuation_fraction: float = 0.5,
        eval_every: int = 250,
        eval_batch_size: int = 1024,
        tol: float | None = None,
        device: str = "auto",
        dtype: th.dtype = th.float32,
        seed: int | None = None,
        progress_bar: bool = False,
        method: str = "gradient",
        unbalanced: float | tuple[float, float] | None = None,
    ) -> None:
        self.relaxation = get_relaxation(unbalanced)
        self.update_rule = get_update(method, self.relaxation)
        self.method = method
        self.regularizer: Regularizer = get_regularizer(reg, reg_type)
        self.cost = get_cost(cost)
        if isinstance(self.cost.normalize, str) and self.cost is cost:
            # The scale gets frozen on the first batch: on a copy, so the caller's cost object is never modified.
            self.cost = copy.copy(self.cost)
        check_solver_arguments(locals())
        self.potentials_spec = potentials
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.learning_rate = float(learning_rate)
        self.lr_schedule, self.ema_decay, self.tol = lr_schedule, ema_decay, tol
        self.batch_size, self.steps_per_batch, self.max_steps = int(batch_size), int(steps_per_batch), int(max_steps)
        self.reg_init = None if reg_init is None else float(reg_init)
        self.continuation_fraction = continuation_fraction
        self.eval_every, self.eval_batch_size = int(eval_every), int(eval_batch_size)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.seed = seed
        self.progress_bar = progress_bar
        self.u, self.v, self.u_ema, self.v_ema, self.optimizer = None, None, None, None, None
        self.total_steps = 0
        self._problem: tuple[Measure, Measure] | None = None
        self._generator = th.Generator(device="cpu")
        if seed is not None:
            self._generator.manual_seed(seed)

    @property
    def reg(self) -> float:
        """Target regularisation strength."""
        return self.regularizer.reg

    def _lr_factor(self, progress: float) -> float:
        if callable(self.lr_schedule):
            return float(self.lr_schedule(progress))
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    def _reg_at(self, step: int, n_steps: int) -> Regularizer:
        if self.reg_init is None:
            return self.regularizer
        frac = min(1.0, step / max(1.0, self.continuation_fraction * n_steps))
        eps = self.reg_init * (self.reg / self.reg_init) ** frac
        return type(self.regularizer)(eps) if frac < 1.0 else self.regularizer

    # ---- training ---------------------------------------------------------------------------------------

    def setup(
        self,
        x: Any,
        y: Any,
        a: ArrayLike | None = None,
        b: ArrayLike | None = None,
        pairs: ArrayLike | None = None,
        keypoints: tuple[ArrayLike, ArrayLike] | None = None,
        keypoint_mass: float | None = None,
        warm_start: bool = True,
    ) -> None:
        """Fix the measures for later :meth:`step` calls (and build the potentials if needed).

        Parameters are those of :meth:`fit`. Sampling functions are kept, not copied, so a replay buffer that
        grows between steps is sampled as it is at each step.
        """
        if self.keypoints_required and pairs is None and keypoints is None:
            raise ValueError(f"{type(self).__name__} needs keypoints: pass `pairs` or `keypoints`")
        tabular = isinstance(self.potentials_spec, str) and self.potentials_spec == "tabular"
        mx, my = build_measures(x, y, a, b, pairs, keypoints, keypoint_mass, self.dtype, tabular)
        self.cost.check_dims(mx.rest.dim, my.rest.dim)  # at setup, not as a shape error inside the first step
        if self.u is None or not warm_start:
            self._build(mx, my)
        if self.cost.scale is None and self.cost.normalize is not None:
            _, xs = mx.rest.sample(self.eval_batch_size, self._generator)
            _, ys = my.rest.sample(self.eval_batch_size, self._generator)
            self.cost.fit_scale(xs.to(self.device, self.dtype), ys.to(self.device, self.dtype))
        self._problem = (mx, my)

    def step(self, reg: Regularizer | None = None, learning_rate: float | None = None) -> th.Tensor:
        """One minibatch update of the potentials on the measures fixed by :meth:`setup` (or the last :meth:`fit`).

        One minibatch is drawn and its cost matrix computed; the potentials take ``steps_per_batch`` optimiser
        steps on it.

        Parameters
        ----------
        reg : Regularizer, optional
            The regulariser of this step (eps-continuation); the solver's own by default.
        learning_rate : float, optional
            Step size of this step; unchanged by default.

        Returns
        -------
        torch.Tensor
            The minibatch dual objective before the step (a detached scalar: no host synchronisation).
        """
        if self._problem is None or self.u is None or self.v is None or self.optimizer is None:
            raise RuntimeError("call `setup` (or `fit`) before `step`")
        mx, my = self._problem
        reg = self.regularizer if reg is None else reg
        if learning_rate is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
        self.u.train()
        self.v.train()
        batch = self._trained_block(self._draw(mx, my, self.batch_size))
        # The cost matrix (the expensive part when the cost is a network), and what the rule derives from it,
        # are computed once per minibatch and shared by its `steps_per_batch` optimiser steps.
        with th.no_grad():
            C = self.cost.matrix(batch.x, batch.y)
        prepared = self.update_rule.prepare(batch, C, reg)
        first = None
        for _ in range(self.steps_per_batch):
            uu, vv = self._values(self.u, batch.x_idx, batch.x), self._values(self.v, batch.y_idx, batch.y)
            loss, obj = self.update_rule.loss(uu, vv, C, batch, reg, prepared)
            if not bool(th.isfinite(loss.detach())):
                raise FloatingPointError(
                    f"the dual objective became {float(obj)} at step {self.total_steps + 1}: lower `learning_rate`, "
                    "normalise the cost (normalize='max') or raise `reg`"
                )
            first = obj.detach() if first is None else first
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._update_ema()
        self.total_steps += 1
        assert first is not None
        return first

    def sample_batch(self, batch_size: int, generator: th.Generator | None = None) -> Minibatch:
        """Draw a minibatch of the problem fixed by :meth:`setup` (or the last :meth:`fit`), as training does.

        Parameters
        ----------
        batch_size : int
            Points drawn from each measure (keypoints come on top).
        generator : torch.Generator, optional
            Defaults to the solver's own (training) generator; pass another one to leave training unchanged.
        """
        if self._problem is None:
            raise RuntimeError("call `setup` (or `fit`) before `sample_batch`")
        return self._draw(*self._problem, check_positive_int(batch_size, "batch_size"), generator)

    def evaluate(self, reg: Regularizer | None = None) -> float:
        """Monte-Carlo estimate of the relative marginal error of the current potentials.

        Drawn on fresh batches of ``eval_batch_size`` points: even exact potentials of the population problem
        show an error of order ``1 / sqrt(eval_batch_size * fraction of non-zero H)`` (the noise floor).
        """
        if self._problem is None:
            raise RuntimeError("call `setup` (or `fit`) before `evaluate`")
        u_eval, v_eval = self._eval_potentials()
        return self._marginal_error(u_eval, v_eval, *self._problem, self.regularizer if reg is None else reg)

    def fit(
        self,
        x: Any,
        y: Any,
        a: ArrayLike | None = None,
        b: ArrayLike | None = None,
        pairs: ArrayLike | None = None,
        keypoints: tuple[ArrayLike, ArrayLike] | None = None,
        keypoint_mass: float | None = None,
        max_steps: int | None = None,
        warm_start: bool = True,
        callback: Callback | None = None,
        evaluate: bool = True,
    ) -> DualResult:
        """Maximise the dual by minibatch steps (:meth:`setup`, then :meth:`step`) and return the potentials.

        Parameters
        ----------
        x, y : tensor, array, sampling function or Dataset
            Source and target measures: finite point sets ``(n, d)`` (optionally weighted by ``a``, ``b``),
            functions ``f(batch_size, generator) -> (batch_size, d)`` or map-style datasets.
        a, b : array-like, optional
            Weights of finite point sets.
        pairs : array-like of shape (K, 2), optional
            Matched keypoints as indices into ``x`` and ``y`` (they must carry equal mass).
        keypoints : (array-like (K, d), array-like (K, d')), optional
            Matched keypoints as extra points, carrying ``keypoint_mass`` in total.
        keypoint_mass : float, optional
            Share of the total mass on ``keypoints``; defaults to ``K / (n + K)`` for finite sets.
        max_steps : int, optional
            Steps for this call (default: the solver's ``max_steps``).
        warm_start : bool
            Continue from the potentials of the previous call (``False`` re-initialises them).
        callback : callable, optional
            Called at each evaluation with a dict (``step``, ``objective``, ``marginal_error``, ``reg``,
            ``solver``); returning ``False`` stops training.
        evaluate : bool
            Estimate the marginal error (:meth:`evaluate`) every ``eval_every`` steps and at the end.
            ``False`` skips every estimate: the history then records the objective of the last step only, and
            ``marginal_error`` is NaN. For many short warm-started updates (RL loops) use :meth:`step`.

        Returns
        -------
        DualResult

        Notes
        -----
        On the CPU, with ``batch_size ** 2`` up to 250,000 pairs, the steps run on one torch thread (the caller's
        count is restored after): their operations are too small to share, and two threads on busy cores wait for
        each other.
        """
        n_steps = check_positive_int(max_steps if max_steps is not None else self.max_steps, "max_steps")
        self.setup(x, y, a, b, pairs, keypoints, keypoint_mass, warm_start)
        with _threads.one_thread_if_small(self.batch_size**2, self.device):  # minibatch steps: small operations
            return self._run(n_steps, callback, evaluate)

    def _run(self, n_steps: int, callback: Callback | None, evaluate: bool) -> DualResult:
        """Run the steps of :meth:`fit`, with their schedule, evaluations, callback and stopping rule."""
        scheduler = self._restart_schedule(n_steps)
        history: dict[str, list[float]] = {k: [] for k in ("step", "objective", "marginal_error", "reg", "lr")}
        converged, err, objective, step = False, float("nan"), float("nan"), 0
        assert self.optimizer is not None
        with tqdm(total=n_steps, disable=not self.progress_bar, desc=type(self).__name__, leave=False) as bar:
            for step in range(1, n_steps + 1):
                reg = self._reg_at(step, n_steps)
                lr = self.optimizer.param_groups[0]["lr"]
                objective = float(self.step(reg))
                scheduler.step()
                bar.update(1)
                if not evaluate or (step % self.eval_every and step != n_steps):
                    continue
                err = self.evaluate(reg)
                for key, val in zip(history, (step, objective, err, reg.reg, lr), strict=True):
                    history[key].append(float(val))
                bar.set_postfix(objective=f"{objective:.4g}", marginal_error_mc=f"{err:.3g}")
                info = {"step": step, "objective": objective, "marginal_error": err, "reg": reg.reg, "solver": self}
                if callback is not None and callback(info) is False:
                    break
                converged = self.tol is not None and reg is self.regularizer and err <= self.tol
                if converged:
                    break
        if not evaluate:
            history["step"].append(float(step))
            history["objective"].append(objective)
        return self.result(step, converged, err, history)

    def _restart_schedule(self, n_steps: int) -> LambdaLR:
        """Return a learning-rate schedule over ``n_steps`` that starts again from ``learning_rate`` (one per fit)."""
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.learning_rate
        return LambdaLR(self.optimizer, lambda k: self._lr_factor((k + 1) / n_steps))

    def result(
        self, n_steps: int = 0, converged: bool = False, marginal_error: float = float("nan"), history: dict | None = None
    ) -> DualResult:
        """Return the current potentials as a :class:`DualResult` (the EMA copies when EMA is enabled)."""
        if self.u is None or self.v is None:
            raise RuntimeError("call `fit` (or `setup` and `step`) first")
        u_out, v_out = self._eval_potentials()
        u_out.eval()
        v_out.eval()
        return DualResult(
            u_out,
            v_out,
            self.cost,
            self.reg,
            self.regularizer.name,
            n_steps,
            converged,
            marginal_error,
            history or {},
            keypoints=self._keypoints(),
        )

    def _keypoints(self) -> tuple[th.Tensor, th.Tensor, th.Tensor] | None:
        """Return the matched keypoint pairs and their masses (neural potentials under the mask), else None."""
        if self._problem is None or isinstance(self.u, TabularPotential):
            return None
        mx, my = self._problem
        if mx.kp_pts is None or my.kp_pts is None or mx.kp_w is None:
            return None
        return mx.kp_pts, my.kp_pts, mx.kp_w

    def compatibility(self) -> Compatibility:
        """Compatibility function of the current potentials."""
        if self.u is None or self.v is None:
            raise RuntimeError("call `fit` first")
        u, v = self._eval_potentials()
        return Compatibility(u, v, self.cost, self.reg, self.regularizer.name, keypoints=self._keypoints())


class L2Dual(StochasticDual):
    """Stochastic solver of the L2-regularised dual (Eq. 5). See :class:`StochasticDual` for parameters."""

    def __init__(self, reg: float, **kwargs: Any) -> None:
        kwargs.setdefault("reg_type", "l2")
        if kwargs["reg_type"] != "l2":
            raise ValueError("L2Dual solves the L2 dual; use EntropicDual or StochasticDual for other regularisers")
        super().__init__(reg, **kwargs)


class MaskedL2Dual(L2Dual):
    """Keypoint-masked L2 dual (Eq. 14): every minibatch carries the keypoints (Algorithm 2).

    :meth:`fit` requires ``pairs`` or ``keypoints``. Use a :class:`~neural_ot.MixedCost` with a
    :class:`~neural_ot.KeypointRelationCost` for the relation-preserving cost of KPG.
    """

    keypoints_required = True


class EntropicDual(StochasticDual):
    """Stochastic solver of the entropic dual. See :class:`StochasticDual` for parameters."""

    def __init__(self, reg: float, **kwargs: Any) -> None:
        kwargs["reg_type"] = "entropic"
        super().__init__(reg, **kwargs)
