"""Checks of the arguments of :class:`~otpr_sb3.OTPR` and its policy, each error naming the argument the user wrote.

Each class calls one function of this module when it is built, so a bad setting fails at once, not at the first
training step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from gymnasium import spaces

from neural_ot.dual_updates import UPDATES

#: The update rules of the dual (:mod:`neural_ot.dual_updates`).
DUAL_METHODS = tuple(UPDATES)


def _int(name: str, value: Any, minimum: int, note: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{note}, got {value!r}")


def _real(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or math.isinf(high) else ']'}"
        raise ValueError(f"`{name}` must be a finite number in {interval}, got {value!r}")


def _choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")


def _rate(name: str, value: Any) -> None:
    # A learning rate is a positive number, or a schedule (a callable of the remaining progress).
    if not callable(value):
        _real(name, value, 0.0, low_open=True)


def _sizes(name: str, value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, Iterable) or not list(value):
        raise ValueError(f"`{name}` must be a non-empty sequence of layer sizes, got {value!r}")
    for size in value:
        _int(f"{name}[...]", size, 1)


#: ``dual_kwargs`` of :class:`~otpr_sb3.OTPR` and their defaults (``None``: follows the regime, see
#: :data:`otpr_sb3.defaults.DEFAULT_SETTINGS`).
DUAL_KWARGS: dict[str, Any] = {
    "method": None,
    "learning_rate": 1e-3,
    "batch_size": 48,
    "steps": 1,
    "steps_per_batch": 1,
    "reference_actions": None,
    "unbalanced": None,
    "n_keypoints": 16,
    "eval_freq": 500,
    "eval_batch_size": 256,
}

#: ``actor_kwargs`` of :class:`~otpr_sb3.OTPR` and their defaults.
ACTOR_KWARGS: dict[str, Any] = {
    "batch_size": 256,
    "ema": 0.995,
    "loss": "normalized",
    "candidate_batch_size": 64,
    "reference_actions": 8,
}


def with_defaults(name: str, given: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """``given`` completed with ``defaults``; raises ``ValueError`` naming ``name`` for an unknown key."""
    if given is not None and not isinstance(given, dict):
        raise ValueError(f"`{name}` must be a dict or None, got {given!r}")
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ValueError(f"`{name}` has unknown keys {unknown}; it takes {sorted(defaults)}")
    return {**defaults, **(given or {})}


def merge_saved(kwargs: dict[str, Any], saved: dict[str, Any]) -> None:
    """Complete ``dual_kwargs`` and ``actor_kwargs`` overrides of ``OTPR.load`` with the saved dicts, and check them."""
    for name, defaults, check in (
        ("dual_kwargs", DUAL_KWARGS, check_dual_kwargs),
        ("actor_kwargs", ACTOR_KWARGS, check_actor_kwargs),
    ):
        if name in kwargs:
            kwargs[name] = with_defaults(name, {**saved.get(name, {}), **kwargs[name]}, defaults)
            check(kwargs[name])


def check_dual_kwargs(kw: dict[str, Any]) -> None:
    """Raise ``ValueError`` for the first invalid entry of a completed ``dual_kwargs``."""
    for key in ("batch_size", "steps", "steps_per_batch", "n_keypoints", "eval_batch_size"):
        _int(f"dual_kwargs['{key}']", kw[key], 1)
    _int("dual_kwargs['eval_freq']", kw["eval_freq"], 0, " (0: off)")
    if callable(kw["learning_rate"]):
        raise ValueError("`dual_kwargs['learning_rate']` must be a number (the dual's Adam step size), not a schedule")
    _real("dual_kwargs['learning_rate']", kw["learning_rate"], 0.0, low_open=True)
    if kw["method"] is not None:
        _choice("dual_kwargs['method']", kw["method"], DUAL_METHODS)
    if kw["reference_actions"] is not None:
        _int("dual_kwargs['reference_actions']", kw["reference_actions"], 0, " (0: the learned u)")
    if kw["unbalanced"] is not None:
        _real("dual_kwargs['unbalanced']", kw["unbalanced"], 0.0, low_open=True)
        if kw["method"] == "exact":
            raise ValueError("`dual_kwargs['unbalanced']` needs method 'semi-dual' or 'gradient', not 'exact'")


def check_actor_kwargs(kw: dict[str, Any]) -> None:
    """Raise ``ValueError`` for the first invalid entry of a completed ``actor_kwargs``."""
    for key in ("batch_size", "candidate_batch_size"):
        _int(f"actor_kwargs['{key}']", kw[key], 1)
    _int("actor_kwargs['reference_actions']", kw["reference_actions"], 0, " (0: the learned u)")
    _real("actor_kwargs['ema']", kw["ema"], 0.0, 1.0, low_open=True, high_open=True)
    _choice("actor_kwargs['loss']", kw["loss"], ("normalized", "mean"))


def check_otpr_arguments(args: dict[str, Any]) -> None:
    """Raise ``ValueError`` for the first invalid top-level argument of :class:`~otpr_sb3.OTPR` (``None``: a default)."""
    action_space = getattr(args["env"], "action_space", None)
    if action_space is not None and not isinstance(action_space, spaces.Box):
        raise ValueError(f"OTPR needs a continuous (Box) action space, got {action_space}")
    _rate("learning_rate", args["learning_rate"])
    _int("buffer_size", args["buffer_size"], 1)
    _int("learning_starts", args["learning_starts"], 0)
    for name in ("batch_size", "dual_freq", "policy_delay"):
        _int(name, args[name], 1)
    _int("dual_start", args["dual_start"], 0)
    _real("tau", args["tau"], 0.0, 1.0, low_open=True)
    _real("gamma", args["gamma"], 0.0, 1.0)
    if args["relation_weight"] is not None:
        _real("relation_weight", args["relation_weight"], 0.0, 1.0)
    if args["reg"] is not None:
        _real("reg", args["reg"], 0.0, low_open=True)
    _choice("actor_targets", args["actor_targets"], ("replay", "candidates", None))
    _choice("use_mask", args["use_mask"], (True, False))
    _choice("random_warmup", args["random_warmup"], (True, False, None))
    _choice("critic_backup", args["critic_backup"], ("value", "policy"))


def check_policy_arguments(args: dict[str, Any], guidance: Iterable[str]) -> None:
    """Raise ``ValueError`` for the first invalid argument of :class:`~otpr_sb3.OTPRPolicy`."""
    _int("actor_hidden_dim", args["actor_hidden_dim"], 1)
    _int("actor_n_blocks", args["actor_n_blocks"], 0)
    _int("time_dim", args["time_dim"], 2)
    if args["time_dim"] % 2:
        raise ValueError(f"`time_dim` must be even (sine and cosine halves of the time embedding), got {args['time_dim']}")
    _sizes("critic_hidden", args["critic_hidden"])
    _int("n_timesteps", args["n_timesteps"], 1)
    _int("ddim_steps", args["ddim_steps"], 1)
    if args["ddim_steps"] > args["n_timesteps"]:
        raise ValueError(f"`ddim_steps` must be in [1, n_timesteps={args['n_timesteps']}], got {args['ddim_steps']}")
    _int("n_candidates", args["n_candidates"], 1, " (L)")
    _choice("guidance", args["guidance"], guidance)
    if args["guidance_kwargs"] is not None and not isinstance(args["guidance_kwargs"], dict):
        raise ValueError(f"`guidance_kwargs` must be a dict or None, got {args['guidance_kwargs']!r}")
    _real("expectile", args["expectile"], 0.0, 1.0, low_open=True, high_open=True)
    _rate("actor_learning_rate", args["actor_learning_rate"])
    if args["value_learning_rate"] is not None:
        _rate("value_learning_rate", args["value_learning_rate"])
    if args["eval_noise_seed"] is not None:
        _int("eval_noise_seed", args["eval_noise_seed"], 0)
    _int("eval_candidates", args["eval_candidates"], 1)


__all__ = [
    "ACTOR_KWARGS",
    "DUAL_KWARGS",
    "DUAL_METHODS",
    "check_actor_kwargs",
    "check_dual_kwargs",
    "check_otpr_arguments",
    "merge_saved",
    "check_policy_arguments",
    "with_defaults",
]
