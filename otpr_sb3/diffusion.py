r"""VP-SDE noise schedule, epsilon-prediction loss and DDIM sampling (the paper's Sec. 3.3, App. A.2).

With :math:`t_k = k / T`, the VP-SDE of App. A.2 gives :math:`\bar\alpha_k = e^{h(t_k)}`,
:math:`h(t) = -\tfrac12 t^2 (\beta_{max} - \beta_{min}) - t \beta_{min}`, so
:math:`a_k = \sqrt{\bar\alpha_k} a_0 + \sqrt{1 - \bar\alpha_k}\,\epsilon`. The model predicts
:math:`\epsilon` (Eq. 21 with :math:`w_t = \sigma_t^2`). Sampling uses DDIM with ``K <= T`` steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch as th
from torch import nn

EpsModel = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]  # (a_t, k, condition) -> eps


class VPSchedule(nn.Module):
    """Discretised VP-SDE schedule with ``n_timesteps`` training steps.

    Parameters
    ----------
    n_timesteps : int
        Training horizon ``T`` (the paper uses 20).
    beta_min, beta_max : float
        VP-SDE parameters (Song et al. 2021 defaults).
    """

    def __init__(self, n_timesteps: int = 20, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        super().__init__()
        if n_timesteps < 1:
            raise ValueError(f"`n_timesteps` must be >= 1, got {n_timesteps}")
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.n_timesteps = n_timesteps
        t = th.arange(n_timesteps + 1, dtype=th.float64) / n_timesteps
        h = -0.5 * t**2 * (beta_max - beta_min) - t * beta_min
        self.alphas_cumprod: th.Tensor
        self.register_buffer("alphas_cumprod", th.exp(h).float())  # index 0 is the clean sample
        self._ddim_cache: dict[tuple[int, th.device], list[tuple[int, float, float, float, float]]] = {}

    def q_sample(self, a0: th.Tensor, k: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """Noised actions ``a_k`` for integer steps ``k`` in ``[1, T]`` (shape ``(n,)``)."""
        ab = self.alphas_cumprod[k].unsqueeze(-1)
        return ab.sqrt() * a0 + (1.0 - ab).sqrt() * noise

    def epsilon_loss(
        self,
        model: EpsModel,
        a0: th.Tensor,
        condition: th.Tensor,
        weights: th.Tensor | None = None,
        generator: th.Generator | None = None,
        normalize: bool = True,
    ) -> th.Tensor:
        """Denoising score-matching loss with epsilon prediction, optionally weighted per sample (Eq. 10).

        With ``weights`` (non-negative, e.g. the compatibility ``H``) the loss is
        ``sum_i w_i ||eps_i - eps_theta||^2 / sum_i w_i`` (``normalize=True``: every batch makes a full step,
        however few weights are non-zero) or ``mean_i w_i ||eps_i - eps_theta||^2`` (``normalize=False``: the
        Monte-Carlo form of Eq. 10, whose weights average 1 when they are ``H`` of a solved dual on independent
        states and actions). A sample with zero weight contributes nothing; if every weight is zero the
        loss is zero (and has zero gradient).
        """
        n = a0.shape[0]
        k = th.randint(1, self.n_timesteps + 1, (n,), device=a0.device, generator=generator)
        noise = th.randn(a0.shape, device=a0.device, dtype=a0.dtype, generator=generator)
        err = (model(self.q_sample(a0, k, noise), k, condition) - noise).square().sum(-1)
        if weights is None:
            return err.mean()
        if weights.shape != (n,):
            raise ValueError(f"`weights` must have shape ({n},), got {tuple(weights.shape)}")
        if not normalize:
            return (weights * err).mean()
        total = weights.sum()
        return (weights * err).sum() / total.clamp_min(th.finfo(err.dtype).tiny)

    def ddim_timesteps(self, n_steps: int) -> list[int]:
        """Decreasing steps ``T = k_K > ... > k_1`` of a ``n_steps``-step DDIM, evenly spaced."""
        if not 1 <= n_steps <= self.n_timesteps:
            raise ValueError(f"DDIM steps must be in [1, {self.n_timesteps}], got {n_steps}")
        steps = th.linspace(self.n_timesteps, 1, n_steps).round().long().tolist()
        return sorted(set(int(s) for s in steps), reverse=True)

    def ddim_sample(
        self,
        model: EpsModel,
        condition: th.Tensor,
        noise: th.Tensor,
        n_steps: int,
        clip: float | None = 1.0,
        requires_grad: bool = False,
    ) -> th.Tensor:
        """Deterministic DDIM (eta = 0) from ``noise`` ``(n, act_dim)`` to actions, conditioned on ``condition``.

        Parameters
        ----------
        model : callable
            ``model(a_k, k, condition)`` predicting the noise.
        condition : torch.Tensor of shape (n, cond_dim)
        noise : torch.Tensor of shape (n, act_dim)
            The starting point ``a_T``; fixed noise gives a reproducible action.
        n_steps : int
            Number of DDIM steps ``K``.
        clip : float or None
            Clip the predicted clean action to ``[-clip, clip]`` at every step (SB3's scaled action space).
        requires_grad : bool
            Keep the graph through every denoising step, so that a loss on the actions reaches the model's
            parameters (Diffusion-QL's Q-gradient through the chain). Default: no graph.
        """
        with th.set_grad_enabled(requires_grad):
            a = noise
            coefficients = self._ddim_coefficients(n_steps)
            conditioned = getattr(model, "conditioned", None)
            if conditioned is not None:  # a denoiser that precomputes its state and step inputs
                step_eps = conditioned(condition, [c[0] for c in coefficients])
            else:

                def step_eps(a: th.Tensor, i: int) -> th.Tensor:
                    return model(a, th.full((a.shape[0],), coefficients[i][0], device=a.device), condition)

            for i, (_, sqrt_ab, sqrt_1m_ab, sqrt_ab_prev, sqrt_1m_ab_prev) in enumerate(coefficients):
                eps = step_eps(a, i)
                # Out of place, so that the same arithmetic serves sampling and the graph kept for a Q-gradient.
                a0 = th.sub(a, eps, alpha=sqrt_1m_ab).div(sqrt_ab)
                if clip is not None:
                    a0 = a0.clamp(-clip, clip)
                    eps = th.sub(a, a0, alpha=sqrt_ab).div(sqrt_1m_ab)
                a = th.add(a0.mul(sqrt_ab_prev), eps, alpha=sqrt_1m_ab_prev)
            return a

    def _ddim_coefficients(self, n_steps: int) -> list[tuple[int, float, float, float, float]]:
        """Per DDIM step: ``k`` and the square roots of ``ab_k``, ``1 - ab_k``, ``ab_prev``, ``1 - ab_prev`` (cached)."""
        key = (n_steps, self.alphas_cumprod.device)
        if key not in self._ddim_cache:
            steps = self.ddim_timesteps(n_steps)
            coeffs = []
            for i, k in enumerate(steps):
                ab, ab_prev = self.alphas_cumprod[k], self.alphas_cumprod[steps[i + 1] if i + 1 < len(steps) else 0]
                # Python floats (exactly the float32 values): cheaper than 0-d tensors in the sampling loop.
                coeffs.append(
                    (k, float(ab.sqrt()), float((1.0 - ab).sqrt()), float(ab_prev.sqrt()), float((1.0 - ab_prev).sqrt()))
                )
            self._ddim_cache[key] = coeffs
        return self._ddim_cache[key]
