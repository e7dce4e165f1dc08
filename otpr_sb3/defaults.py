"""OTPR's settings that depend on the regime (from scratch or fine-tuning), and the paper's dual settings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.utils import FloatSchedule

from otpr_sb3.arguments import ACTOR_KWARGS, DUAL_KWARGS, check_actor_kwargs, check_dual_kwargs, with_defaults
from otpr_sb3.guidance import guidance_parameters

#: The paper's dual (eps 1e-5, dual minibatch 64, dual learning rate 1e-6, gradient ascent on learned u and v):
#: ``OTPR(..., **PAPER_DUAL)``.
PAPER_DUAL: dict[str, Any] = {
    "reg": 1e-5,
    "dual_kwargs": {"batch_size": 64, "learning_rate": 1e-6, "method": "gradient", "reference_actions": 0},
}

#: Values of the settings left unset (``reg=None``; ``method`` and ``reference_actions`` left out of ``dual_kwargs``,
#: ``n_candidates`` and ``actor_learning_rate`` left out of ``policy_kwargs``), by whether the actor was pretrained.
#: ``pretrain`` switches to the fine-tuning column before its
#: behaviour cloning; ``learn`` resolves them again when it starts. The from-scratch column is the setting measured
#: in docs/from_scratch.rst, the fine-tuning column the one of the Fetch results (docs/results.rst).
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "fine-tuning": {
        "reg": 0.5,
        "method": "semi-dual",
        "reference_actions": 48,
        "n_candidates": 8,
        "actor_learning_rate": 1e-4,
    },
    "from-scratch": {
        "reg": 0.05,
        "method": "gradient",
        "reference_actions": 0,
        "n_candidates": 16,
        "actor_learning_rate": 3e-4,
    },
}

#: Where each setting of :data:`DEFAULT_SETTINGS` is given: an argument of OTPR, or a key of one of its dicts.
SETTING_PLACES: dict[str, str] = {
    "reg": "reg",
    "method": "dual_kwargs",
    "reference_actions": "dual_kwargs",
    "n_candidates": "policy_kwargs",
    "actor_learning_rate": "policy_kwargs",
}


def unset_settings(
    reg: float | None, dual_kwargs: dict[str, Any] | None, policy_kwargs: dict[str, Any] | None
) -> tuple[str, ...]:
    """Return the settings of :data:`DEFAULT_SETTINGS` the user left unset (``reg=None``, or absent from their dict)."""
    given = {
        "reg": {} if reg is None else {"reg": reg},
        "dual_kwargs": dual_kwargs or {},
        "policy_kwargs": policy_kwargs or {},
    }
    return tuple(k for k, place in SETTING_PLACES.items() if given[place].get(k) is None)


def changed_settings(regime: str, unset: tuple[str, ...], current: dict[str, Any]) -> dict[str, Any]:
    """Return the unset settings whose value for ``regime`` differs from ``current``."""
    if regime not in DEFAULT_SETTINGS:
        raise ValueError(f"`regime` must be one of {tuple(DEFAULT_SETTINGS)}, got {regime!r}")
    values = DEFAULT_SETTINGS[regime]
    return {k: values[k] for k in unset if current[k] != values[k]}


@dataclass
class Settings:
    """OTPR's constructor settings with the unset ones resolved for an actor learning from scratch.

    Attributes
    ----------
    unset : tuple of str
        The settings of :data:`DEFAULT_SETTINGS` the user left unset (they follow the regime).
    dual_kwargs, actor_kwargs : dict
        Complete and checked.
    policy_kwargs : dict
        With the regime's ``n_candidates`` and ``actor_learning_rate`` where unset, and ``reg`` and ``relation_weight``
        in ``guidance_kwargs`` when the guidance takes them (the guidance owns them).
    """

    unset: tuple[str, ...]
    dual_kwargs: dict[str, Any]
    actor_kwargs: dict[str, Any]
    policy_kwargs: dict[str, Any]


def resolve_settings(
    reg: float | None,
    relation_weight: float | None,
    dual_kwargs: dict[str, Any] | None,
    actor_kwargs: dict[str, Any] | None,
    policy_kwargs: dict[str, Any] | None,
) -> Settings:
    """Resolve and check OTPR's constructor settings (see :class:`Settings`).

    Raises
    ------
    ValueError
        For an invalid entry of a dict, or a guidance setting given both to OTPR and in ``guidance_kwargs``.
    """
    policy_kwargs = dict(policy_kwargs or {})
    guidance_kwargs = dict(policy_kwargs.get("guidance_kwargs") or {})
    given_reg = reg if reg is not None else guidance_kwargs.get("reg")
    unset = unset_settings(given_reg, dual_kwargs, policy_kwargs)
    scratch = DEFAULT_SETTINGS["from-scratch"]
    dual = with_defaults("dual_kwargs", dual_kwargs, DUAL_KWARGS)
    dual.update({k: scratch[k] for k in ("method", "reference_actions") if dual[k] is None})
    check_dual_kwargs(dual)
    actor = with_defaults("actor_kwargs", actor_kwargs, ACTOR_KWARGS)
    check_actor_kwargs(actor)
    policy_kwargs.update({k: scratch[k] for k in ("n_candidates", "actor_learning_rate") if k not in policy_kwargs})
    forwarded = {"reg": scratch["reg"] if given_reg is None else reg, "relation_weight": relation_weight}
    taken = guidance_parameters(policy_kwargs.get("guidance", "compatibility"))
    for name, value in forwarded.items():
        if value is None or name not in taken:
            continue
        if name in guidance_kwargs and guidance_kwargs[name] != value:
            raise ValueError(f"`{name}` is given both to OTPR and in `guidance_kwargs`; give it once")
        guidance_kwargs[name] = value
    policy_kwargs["guidance_kwargs"] = guidance_kwargs
    return Settings(unset, dual, actor, policy_kwargs)


def warn_fine_tuning_on_empty_replay() -> None:
    """Warn that a pretrained actor is about to fine-tune on replay pairs with an empty replay buffer."""
    warnings.warn(
        "OTPR.learn: the actor was pretrained but the replay buffer is empty, and fine-tuning fits the actor "
        "to replay pairs, so it will be fitted to its own exploration only and drift away from the "
        "demonstrations. Put them in the replay buffer: `pretrain(demos)` does by default "
        "(add_to_replay_buffer=True), or `otpr_sb3.add_demonstrations(model.replay_buffer, demos, "
        "model.action_space)`; or pass actor_targets='candidates' (replay pairs then only until the guidance is ready).",
        UserWarning,
        stacklevel=4,
    )


class RegimeDefaults:
    """The part of :class:`~otpr_sb3.OTPR` that gives the unset settings their regime's values (a mixin).

    The settings named in ``default_settings`` take the values of :data:`DEFAULT_SETTINGS` for :attr:`regime`: the
    from-scratch ones at construction, the fine-tuning ones from :meth:`mark_pretrained` on.
    """

    pretrained: bool
    default_settings: tuple[str, ...]
    dual_kwargs: dict[str, Any]
    actor_kwargs: dict[str, Any]
    policy_kwargs: dict[str, Any]
    policy: Any
    use_mask: bool
    seed: int | None
    device: Any
    _current_progress_remaining: float
    _actor_lr: Any

    @property
    def reg(self) -> float | None:
        """Eps of the guidance's dual (``None`` for a guidance without one)."""
        return getattr(self.policy.guidance, "reg", None)

    @property
    def relation_weight(self) -> float | None:
        """Weight of the keypoint relation cost in the guidance's dual (``None`` for a guidance without one)."""
        return getattr(self.policy.guidance, "relation_weight", None)

    @property
    def regime(self) -> str:
        """``"fine-tuning"`` once the actor was pretrained (:meth:`mark_pretrained`), else ``"from-scratch"``."""
        return "fine-tuning" if self.pretrained else "from-scratch"

    def mark_pretrained(self) -> None:
        """Record that the actor is pretrained and give the settings left unset their fine-tuning values.

        :meth:`pretrain` calls it; call it after loading pretrained networks by other means (as the benchmark harness
        does with a shared checkpoint).
        """
        self.pretrained = True
        self._apply_default_settings()

    def _apply_default_settings(self) -> None:
        """Give the settings in ``default_settings`` the values of :data:`DEFAULT_SETTINGS` for the current regime."""
        policy = self.policy
        current = {
            "reg": self.reg,
            "method": self.dual_kwargs["method"],
            "reference_actions": self.dual_kwargs["reference_actions"],
            **{k: policy.arch[k] for k in ("n_candidates", "actor_learning_rate")},
        }
        if self.reg is None:  # a guidance without a dual: nothing to set
            current.pop("reg")
        changed = changed_settings(self.regime, tuple(k for k in self.default_settings if k in current), current)
        for name in ("n_candidates", "actor_learning_rate"):
            if name in changed:  # the saved policy_kwargs rebuild the policy as it is now
                policy.arch[name] = self.policy_kwargs[name] = changed[name]
        if "n_candidates" in changed:
            policy.n_candidates = int(changed["n_candidates"])
        if "actor_learning_rate" in changed:
            self._actor_lr = FloatSchedule(changed["actor_learning_rate"])
            for group in policy.actor.optimizer.param_groups:
                group["lr"] = self._actor_lr(self._current_progress_remaining)
        if "reg" in changed:
            self._configure_guidance(reg=changed["reg"])
        training: dict[str, Any] = {k: changed[k] for k in ("method", "reference_actions") if k in changed}
        if training:
            self.dual_kwargs.update(training)
            policy.guidance.setup_training(**self._training_settings())

    def _complete_settings(self) -> None:
        """Complete ``dual_kwargs`` and ``actor_kwargs`` with their defaults (a model saved before a key existed)."""
        self.dual_kwargs = {**DUAL_KWARGS, **self.dual_kwargs}
        self.actor_kwargs = {**ACTOR_KWARGS, **self.actor_kwargs}

    def _training_settings(self) -> dict[str, Any]:
        d = self.dual_kwargs
        names = ("method", "learning_rate", "batch_size", "steps", "steps_per_batch", "reference_actions", "unbalanced")
        return {**{k: d[k] for k in names}, "use_mask": self.use_mask, "seed": self.seed, "device": self.device}

    def _configure_guidance(self, **settings: Any) -> None:
        """Give the guidance new settings (e.g. ``reg``), and record them in ``policy_kwargs`` for saving."""
        self.policy.guidance.configure(**settings)
        self.policy_kwargs["guidance_kwargs"] = {**self.policy_kwargs.get("guidance_kwargs", {}), **settings}
