"""How selective a guidance is, and the temperature at which another guidance is as selective (issue 25's matching).

A guidance turns each state's candidate actions into weights; the entropy of the normalised weights measures how
selective it is (``log m`` for uniform weights over ``m`` candidates, 0 for one candidate). H's selectivity is set by
``reg``; the Q and advantage guidances' by their temperature. :func:`match_temperature` finds the temperature at which
exponential weights of given scores have a target mean entropy, so guidances can be compared at matched selectivity.
"""

from __future__ import annotations

import math

import torch as th

from otpr_sb3.guidance.base import Guidance, PolicyView


def weight_entropy(weights: th.Tensor) -> th.Tensor:
    """Entropy (nats) of each row of non-negative ``weights`` ``(n, m)``, normalised; NaN for a row of zeros.

    Raises
    ------
    ValueError
        If ``weights`` is not two-dimensional or has a negative or non-finite entry.
    """
    if weights.ndim != 2:
        raise ValueError(f"`weights` must have shape (n, m), got {tuple(weights.shape)}")
    if not bool(th.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("`weights` must be finite and non-negative")
    total = weights.sum(1, keepdim=True)
    p = weights / total.clamp_min(1e-300)
    entropy = -th.xlogy(p, p).sum(1)
    return th.where(total.squeeze(1) > 0, entropy, th.full_like(entropy, float("nan")))


def _mean_softmax_entropy(scores: th.Tensor, temperature: float) -> float:
    return float(weight_entropy(th.softmax(temperature * scores.double(), dim=1)).mean())


def match_temperature(
    scores: th.Tensor, target_entropy: float, low: float = 1e-3, high: float = 1e3, tol: float = 1e-6
) -> float:
    """Find the temperature ``T`` at which weights ``exp(T * scores)``, row by row, have mean entropy ``target_entropy``.

    The mean entropy falls as ``T`` grows (each row's does), so ``T`` is found by bisection on ``log T``.

    Parameters
    ----------
    scores : torch.Tensor of shape (n, m)
        Scores of ``m`` candidates for each of ``n`` states (e.g. ``Q / spread(Q)``).
    target_entropy : float
        Mean entropy to reach, in nats.
    low, high : float
        The bracket of temperatures searched.
    tol : float
        Relative width of the final bracket.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the target is not reached inside ``[low, high]`` (it lies outside the entropies at the two ends).
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"`scores` must have shape (n, m >= 2), got {tuple(scores.shape)}")
    if not 0 < low < high:
        raise ValueError(f"need 0 < `low` < `high`, got {low!r} and {high!r}")
    at_low, at_high = _mean_softmax_entropy(scores, low), _mean_softmax_entropy(scores, high)
    if not at_high <= target_entropy <= at_low:
        raise ValueError(
            f"`target_entropy` {target_entropy:.4g} is outside [{at_high:.4g}, {at_low:.4g}], the mean entropies at "
            f"temperatures {high:g} and {low:g}"
        )
    lo, hi = math.log(low), math.log(high)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if _mean_softmax_entropy(scores, math.exp(mid)) > target_entropy:
            lo = mid  # not selective enough: raise the temperature
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


@th.no_grad()
def candidate_entropy(guidance: Guidance, policy: PolicyView, obs_n: th.Tensor, candidates: th.Tensor) -> float:
    """Mean entropy of a guidance's weights over each state's candidates ``(n, m, act_dim)`` (rows of zeros left out)."""
    _, w = guidance.grouped_weights(policy, obs_n, candidates)
    entropy = weight_entropy(w.double())
    return float(entropy[~th.isnan(entropy)].mean())
