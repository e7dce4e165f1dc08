"""The decision rule of a paired comparison: holds, reversed, equivalent or undecided, and the seeds that would decide.

The rule of ``docs/claims.rst``, written there before the reported runs: with ``d`` the per-seed differences
(method A minus method B, paired by seed), the claim "A beats B"

- *holds* when the 95% interval of the mean of ``d`` lies above 0;
- is *reversed* when it lies below 0 (B beats A);
- is *equivalent* when the 90% interval lies within ``±margin``;
- is otherwise *undecided*, with the number of seeds that the observed spread says would decide it.

Below the protocol's ten seeds a comparison is *pending*: small-sample bootstrap intervals are too narrow to decide
on (one seed gives a zero-width interval), so they are shown but not judged. The intervals are rliable's stratified
bootstrap (one task: a bootstrap over seeds); ``decide(..., interval="t")`` applies the same rule to Student-t
intervals, the cautious reading where a study has fewer seeds than ten.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from otpr_sb3.benchmark.report import _bootstrap_rng

MARGIN = 0.05  # the equivalence margin of the protocol, in success rate
MIN_SEEDS = 10  # the protocol's paired seeds per comparison
_Z95, _Z90 = 1.959964, 1.644854  # two-sided normal quantiles of the 95% and 90% intervals


def last_five(rows: list[dict[str, float]]) -> float:
    """Return the mean success of a run's last five evaluations: the protocols' first primary metric and tuning score.

    ``rows`` are a run's evaluations (:func:`otpr_sb3.benchmark.evaluation.read_evaluations`), at least five.
    """
    if len(rows) < 5:
        raise ValueError(f"`rows` must hold at least five evaluations, got {len(rows)}")
    return sum(r["success"] for r in rows[-5:]) / 5


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`.

    Attributes
    ----------
    verdict : str
        ``"holds"``, ``"reversed"``, ``"equivalent"``, ``"undecided"``, or ``"pending"`` (fewer seeds than the
        protocol's).
    mean : float
        Mean paired difference.
    ci95, ci90 : tuple of float
        Bootstrap intervals of the mean.
    seeds : int
        Number of paired seeds.
    seeds_needed : int or None
        For an undecided or pending comparison, the seeds at which the observed mean and spread would decide it (normal
        approximation; the smaller of the seeds for a sign and for equivalence). ``None`` when decided, or when
        fewer than two seeds leave the spread unknown.
    """

    verdict: str
    mean: float
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    seeds: int
    seeds_needed: int | None


def bootstrap_interval(diffs: np.ndarray, level: float, reps: int = 2_000, seed: int = 0) -> tuple[float, float]:
    """Stratified-bootstrap interval (rliable) of the mean of ``diffs`` at confidence ``level``.

    Parameters
    ----------
    diffs : array of shape (n_seeds,)
        Paired differences, one per seed.
    level : float
        Confidence level in (0, 1), e.g. 0.95.
    reps : int
        Bootstrap samples.
    seed : int
        Seed of the bootstrap, so that a report is the same each time it is made.
    """
    from rliable import library as rly

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = _checked(diffs)
    with warnings.catch_warnings(), _bootstrap_rng(seed):  # rliable passes arch a RandomState, which arch deprecates
        warnings.simplefilter("ignore", FutureWarning)
        _, interval = rly.get_interval_estimates(
            {"d": values[:, None]},
            lambda x: np.array([x.mean()]),
            reps=reps,
            confidence_interval_size=level,
            random_state=np.random.RandomState(seed),
        )
    return float(interval["d"][0, 0]), float(interval["d"][1, 0])


def seeds_needed(mean: float, std: float, margin: float = MARGIN, max_seeds: int = 10_000) -> int | None:
    """Seeds at which a mean difference ``mean`` with per-seed spread ``std`` would be decided.

    The smallest ``n`` at which the Student-t interval of the mean (``n - 1`` degrees of freedom, a little wider
    than the bootstrap's normal limit, so the estimate errs towards more seeds) either excludes 0 at 95% or, when
    ``|mean| < margin``, fits in ``±margin`` at 90%. ``None`` if no ``n`` up to ``max_seeds`` does (``mean`` 0 and
    no equivalence possible, or a non-finite or negative spread).
    """
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
        return None
    m = abs(mean)
    if std == 0:
        return 2 if (m > 0 or m < margin) else None

    def decided(n: int) -> bool:
        sign = m > 0 and _t_half_width(std, n, 0.975) < m
        equivalent = m < margin and m + _t_half_width(std, n, 0.95) <= margin
        return bool(sign or equivalent)

    options = []  # the normal approximation, then the first n at which the t interval decides
    if m > 0:
        options.append((_Z95 * std / m) ** 2)
    if m < margin:
        options.append((_Z90 * std / (margin - m)) ** 2)
    if not options or min(options) > max_seeds:
        return None
    n = max(2, math.ceil(min(options)))
    while not decided(n):
        n += 1
        if n > max_seeds:
            return None
    return n


def t_interval(diffs: np.ndarray, level: float) -> tuple[float, float]:
    """Student-t interval of the mean of ``diffs`` at confidence ``level`` (``n - 1`` degrees of freedom).

    With few seeds the percentile bootstrap's interval is narrower than this one (three seeds allow only ten distinct
    resamples, and the bootstrap knows nothing of the spread it has not seen); this is the textbook interval to set
    beside it.

    Parameters
    ----------
    diffs : array of shape (n_seeds,)
        Paired differences, one per seed, at least two (a spread needs two).
    level : float
        Confidence level in (0, 1), e.g. 0.95.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = _checked(diffs)
    if len(values) < 2:
        raise ValueError(f"diffs must hold at least two values for a t interval, got {len(values)}")
    mean = float(values.mean())
    half = _t_half_width(float(values.std(ddof=1)), len(values), 0.5 + level / 2)
    return mean - half, mean + half


def _t_half_width(std: float, n: int, quantile: float) -> float:
    """Half-width of the Student-t interval of a mean of ``n`` values of spread ``std``, at the t ``quantile``."""
    from scipy.stats import t

    return float(t.ppf(quantile, n - 1)) * std / math.sqrt(n)


def decide(
    diffs: np.ndarray,
    margin: float = MARGIN,
    min_seeds: int = MIN_SEEDS,
    reps: int = 2_000,
    seed: int = 0,
    interval: str = "bootstrap",
) -> Decision:
    """Apply the decision rule to paired differences (A minus B, one per seed).

    Parameters
    ----------
    diffs : array of shape (n_seeds,)
        Per-seed differences of a primary metric. At least one, all finite.
    margin : float
        Equivalence margin (0.05 in the protocol).
    min_seeds : int
        Seeds below which the comparison is ``"pending"`` (10 in the protocol).
    reps, seed : int
        Bootstrap samples and seed.
    interval : {"bootstrap", "t"}
        The intervals the rule reads: rliable's stratified bootstrap (the protocols'), or Student-t intervals
        (:func:`t_interval`), the cautious reading at a few seeds. One seed has a zero-width interval either way.

    Returns
    -------
    Decision
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    if min_seeds < 2:
        raise ValueError(f"min_seeds must be at least 2 (a spread needs two seeds), got {min_seeds}")
    if interval not in ("bootstrap", "t"):
        raise ValueError(f"interval must be 'bootstrap' or 't', got {interval!r}")
    values = _checked(diffs)
    mean = float(values.mean())
    if interval == "t" and len(values) > 1:
        (lo95, hi95), (lo90, hi90) = t_interval(values, 0.95), t_interval(values, 0.90)
    elif interval == "t":
        lo95 = hi95 = lo90 = hi90 = mean
    else:
        lo95, hi95 = bootstrap_interval(values, 0.95, reps, seed)
        lo90, hi90 = bootstrap_interval(values, 0.90, reps, seed)
    if len(values) < min_seeds:
        verdict = "pending"
    elif lo95 > 0:
        verdict = "holds"
    elif hi95 < 0:
        verdict = "reversed"
    elif -margin <= lo90 and hi90 <= margin:
        verdict = "equivalent"
    else:
        verdict = "undecided"
    needed = None
    if verdict in ("undecided", "pending") and len(values) > 1:
        needed = seeds_needed(mean, float(values.std(ddof=1)), margin)
        floor = len(values) + 1 if verdict == "undecided" else min_seeds
        needed = None if needed is None else max(needed, floor)
    return Decision(verdict, mean, (lo95, hi95), (lo90, hi90), len(values), needed)


def paired_seeds(first: Mapping[int, Mapping[str, Any]], second: Mapping[int, Mapping[str, Any]], what: str) -> list[int]:
    """Return the seeds on which two arms are paired, after the protocols' checks on where their runs ran.

    Every run of both arms must come from one code commit, and the two runs of each paired seed from one CPU kind:
    a pair then compares the arms on the same code and hardware, while seeds may differ in CPU kind (a study that
    outlives one machine continues on the next, which may be of another kind).

    Parameters
    ----------
    first, second : mapping of seed to run record
        Each arm's runs by seed; a record has ``"commit"`` and ``"cpu"``.
    what : str
        The comparison, named in the error.

    Returns
    -------
    list of int
        The seeds both arms have, sorted.

    Raises
    ------
    ValueError
        If the runs come from more than one commit, or a paired seed's two runs from two CPU kinds.
    """
    commits = sorted({str(r["commit"]) for r in (*first.values(), *second.values())})
    if len(commits) > 1:
        raise ValueError(f"{what}: runs from more than one code commit {commits}")
    seeds = sorted(set(first) & set(second))
    split = [s for s in seeds if first[s]["cpu"] != second[s]["cpu"]]
    if split:
        kinds = {s: (first[s]["cpu"], second[s]["cpu"]) for s in split}
        raise ValueError(f"{what}: the two runs of seeds {split} ran on different CPU kinds {kinds}")
    return seeds


def _checked(diffs: np.ndarray) -> np.ndarray:
    values = np.asarray(diffs, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"diffs must be a non-empty 1-D array of per-seed differences, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("diffs must be finite (a run without a metric cannot be paired)")
    return values
