"""Guidances of OTPR, registered by name: how candidates are scored and the actor's targets weighted.

``policy_kwargs={"guidance": name, "guidance_kwargs": {...}}`` picks one; :func:`register_guidance` adds one
(see docs/design.rst for a short example).
"""

from __future__ import annotations

import inspect
from typing import Any

from otpr_sb3.guidance.authors_release import AuthorsReleaseGuidance
from otpr_sb3.guidance.base import (
    Guidance,
    GuidanceTrainingState,
    PolicyView,
    UpdateContext,
    expectile_weights,
    weighted_score_matching,
)
from otpr_sb3.guidance.compatibility import COSTS, CompatibilityGuidance, CriticCost
from otpr_sb3.guidance.dql import DQLGuidance
from otpr_sb3.guidance.dual_training import DualTrainer
from otpr_sb3.guidance.selectivity import candidate_entropy, match_temperature, weight_entropy
from otpr_sb3.guidance.weights import AdvantageGuidance, ExpectileGuidance, QGuidance

GUIDANCES: dict[str, type[Guidance]] = {}


def register_guidance(cls: type[Guidance]) -> type[Guidance]:
    """Register a :class:`Guidance` subclass under its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Guidance)) or not cls.name:
        raise TypeError(f"a guidance must be a Guidance subclass with a `name`, got {cls!r}")
    GUIDANCES[cls.name] = cls
    return cls


for _cls in (CompatibilityGuidance, QGuidance, AdvantageGuidance, ExpectileGuidance, DQLGuidance, AuthorsReleaseGuidance):
    register_guidance(_cls)


def guidance_class(name: str) -> type[Guidance]:
    """Return the guidance class registered as ``name``."""
    if name not in GUIDANCES:
        raise ValueError(f"`guidance` must be one of {tuple(GUIDANCES)}, got {name!r}")
    return GUIDANCES[name]


def guidance_parameters(name: str) -> tuple[str, ...]:
    """Names of the keyword arguments of the guidance ``name`` (besides ``obs_dim``, ``act_dim`` and ``policy``)."""
    params = inspect.signature(guidance_class(name).__init__).parameters
    return tuple(p for p in params if p not in ("self", "obs_dim", "act_dim", "policy"))


def make_guidance(name: str, obs_dim: int, act_dim: int, policy: PolicyView, **kwargs: Any) -> Guidance:
    """Build the guidance ``name``; ``kwargs`` must be among :func:`guidance_parameters`."""
    cls = guidance_class(name)
    allowed = guidance_parameters(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"`guidance_kwargs` {unknown} are not parameters of the {name!r} guidance (it takes {allowed})")
    if "policy" in inspect.signature(cls.__init__).parameters:
        kwargs["policy"] = policy
    return cls(obs_dim, act_dim, **kwargs)


__all__ = [
    "COSTS",
    "GUIDANCES",
    "AuthorsReleaseGuidance",
    "AdvantageGuidance",
    "CompatibilityGuidance",
    "CriticCost",
    "DQLGuidance",
    "DualTrainer",
    "ExpectileGuidance",
    "Guidance",
    "GuidanceTrainingState",
    "PolicyView",
    "QGuidance",
    "UpdateContext",
    "candidate_entropy",
    "expectile_weights",
    "guidance_class",
    "guidance_parameters",
    "make_guidance",
    "match_temperature",
    "register_guidance",
    "weight_entropy",
    "weighted_score_matching",
]
