"""Checks of the arguments of :class:`~otpr_sb3.OTPR` and its policy, each error naming the argument the user wrote.

Each class calls one function of this module when it is built, so a bad setting fails at once, not at the first
training step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

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


def check_otpr_arguments(args: dict[str, Any]) -> None:
    """Raise ``ValueError`` for the first invalid argument of :class:`~otpr_sb3.OTPR` (``None`` means a default)."""
    _rate("learning_rate", args["learning_rate"])
    _int("buffer_size", args["buffer_size"], 1)
    _int("learning_starts", args["learning_starts"], 0)
    for name in ("batch_size", "actor_batch_size", "candidate_batch_size", "dual_batch_size", "dual_eval_batch_size"):
        _int(name, args[name], 1)
    for name in ("dual_steps", "dual_steps_per_batch", "dual_freq", "policy_delay", "n_keypoints"):
        _int(name, args[name], 1)
    _int("dual_start", args["dual_start"], 0)
    _int("dual_eval_freq", args["dual_eval_freq"], 0, " (0: off)")
    _real("tau", args["tau"], 0.0, 1.0, low_open=True)
    _real("gamma", args["gamma"], 0.0, 1.0)
    _real("actor_ema", args["actor_ema"], 0.0, 1.0, low_open=True, high_open=True)
    _real("dql_eta", args["dql_eta"], 0.0)
    _real("relation_weight", args["relation_weight"], 0.0, 1.0)
    _rate("dual_learning_rate", args["dual_learning_rate"])
    if callable(args["dual_learning_rate"]):
        raise ValueError("`dual_learning_rate` must be a number (the dual's Adam step size), not a schedule")
    if args["reg"] is not None:
        _real("reg", args["reg"], 0.0, low_open=True)
    if args["dual_method"] is not None:
        _choice("dual_method", args["dual_method"], DUAL_METHODS)
    for name in ("reference_actions", "actor_reference_actions"):
        if args[name] is not None:
            _int(name, args[name], 0, " (0: the learned u)")
    _choice("actor_loss", args["actor_loss"], ("normalized", "mean"))
    _choice("actor_targets", args["actor_targets"], ("replay", "candidates", None))
    _choice("use_mask", args["use_mask"], (True, False))
    _choice("random_warmup", args["random_warmup"], (True, False, None))


def check_policy_arguments(args: dict[str, Any], guidance: Iterable[str], costs: Iterable[str]) -> None:
    """Raise ``ValueError`` for the first invalid argument of :class:`~otpr_sb3.OTPRPolicy`."""
    _int("actor_hidden_dim", args["actor_hidden_dim"], 1)
    _int("actor_n_blocks", args["actor_n_blocks"], 0)
    _int("time_dim", args["time_dim"], 2)
    if args["time_dim"] % 2:
        raise ValueError(f"`time_dim` must be even (sine and cosine halves of the time embedding), got {args['time_dim']}")
    _sizes("critic_hidden", args["critic_hidden"])
    _sizes("potential_hidden", args["potential_hidden"])
    _int("n_timesteps", args["n_timesteps"], 1)
    _int("ddim_steps", args["ddim_steps"], 1)
    if args["ddim_steps"] > args["n_timesteps"]:
        raise ValueError(f"`ddim_steps` must be in [1, n_timesteps={args['n_timesteps']}], got {args['ddim_steps']}")
    _int("n_candidates", args["n_candidates"], 1, " (L)")
    _choice("guidance", args["guidance"], guidance)
    _choice("cost", args["cost"], costs)
    _real("expectile", args["expectile"], 0.0, 1.0, low_open=True, high_open=True)
    _real("temperature", args["temperature"], 0.0, low_open=True)
    _real("relation_rho", args["relation_rho"], 0.0, low_open=True)
    _rate("actor_learning_rate", args["actor_learning_rate"])
    if args["value_learning_rate"] is not None:
        _rate("value_learning_rate", args["value_learning_rate"])
    if args["eval_noise_seed"] is not None:
        _int("eval_noise_seed", args["eval_noise_seed"], 0)


__all__ = ["DUAL_METHODS", "check_otpr_arguments", "check_policy_arguments"]
