"""The guidance interface: how candidate actions are scored and how the actor's targets are weighted.

A guidance is a module of the policy (its state is saved with it). OTPR and its policy only call this
interface; each guidance says

- how it scores actions (:meth:`Guidance.scores`, and :meth:`Guidance.grouped_scores` for ``m`` actions per state),
- how it weights the actor's replay targets, or what actor loss it uses instead (:meth:`Guidance.actor_loss`),
- what it needs updated during training (:meth:`Guidance.update`, every ``dual_freq`` gradient steps), and
- what it logs (the dictionaries these methods return).

Until :attr:`Guidance.ready` (set by the algorithm after ``dual_start`` updates) every guidance scores with
IDQL's expectile weights, the documented fallback, so that all guidances share one warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch as th
from torch import nn

from otpr_sb3.critics import RunningScales, TwinQCritic, ValueNet
from otpr_sb3.diffusion import VPSchedule


class PolicyView(Protocol):
    """What a guidance reads from the policy: the diffusion actor and the IQL critics (see ``OTPRPolicy``)."""

    @property
    def actor(self) -> nn.Module: ...  # noqa: D102

    @property
    def schedule(self) -> VPSchedule: ...  # noqa: D102

    @property
    def ddim_steps(self) -> int: ...  # noqa: D102

    @property
    def critic(self) -> TwinQCritic: ...  # noqa: D102

    @property
    def value(self) -> ValueNet: ...  # noqa: D102

    @property
    def scales(self) -> RunningScales: ...  # noqa: D102

    @property
    def expectile(self) -> float: ...  # noqa: D102


@dataclass
class UpdateContext:
    """What a guidance's training update may use.

    Attributes
    ----------
    policy : PolicyView
    sample_states, sample_actions : callable
        ``(n, generator) -> tensor``: independent draws of prepared replay states and of scaled replay actions.
    reference_generator, eval_generator : torch.Generator
        Streams of the reference actions and of held-out diagnostics (saved with the model).
    diagnostics_batch_size : int
        When positive, this update also computes held-out diagnostics on a minibatch of this size.
    verbose : int
    """

    policy: PolicyView
    sample_states: Callable[[int, th.Generator], th.Tensor]
    sample_actions: Callable[[int, th.Generator], th.Tensor]
    reference_generator: th.Generator
    eval_generator: th.Generator
    diagnostics_batch_size: int = 0
    verbose: int = 0


def expectile_weights(policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """IDQL's expectile weights ``|tau - 1(Q < V)|`` of aligned pairs, with the advantage as the score."""
    adv = policy.critic.min(obs_n, actions) - policy.value(obs_n)
    return adv, th.where(adv < 0, 1.0 - policy.expectile, policy.expectile).to(adv.dtype)


class GuidanceTrainingState:
    """The training state of a guidance (e.g. the dual's optimiser), saved by SB3 as it saves optimisers.

    ``get_guidance`` returns the guidance (looked up at each call: a loaded policy replaces it).
    """

    def __init__(self, get_guidance: Callable[[], Guidance]) -> None:
        self.get_guidance = get_guidance

    def state_dict(self) -> dict[str, Any]:
        """Return the guidance's :meth:`Guidance.save_state` (empty without one)."""
        return self.get_guidance().save_state() or {}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Restore a :meth:`state_dict`."""
        if state:
            self.get_guidance().load_state(state)


def weighted_score_matching(
    policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, w: th.Tensor, normalize: bool
) -> tuple[th.Tensor | None, dict[str, Any]]:
    """Score matching of the actor on pairs weighted by ``w``; ``None`` for the loss when no weight is positive.

    The logs are 0-dim tensors, read when the algorithm writes its logs.
    """
    loss = policy.schedule.epsilon_loss(policy.actor, actions, obs_n, w, normalize=normalize)
    p = w / w.sum().clamp_min(1e-12)
    logs = {
        "actor_loss": loss.detach(),
        "h_nonzero_frac": (w > 0).float().mean(),
        "h_entropy": -(th.xlogy(p, p)).sum(),
    }
    return (loss if float(w.sum()) > 0 else None), logs


class Guidance(nn.Module):
    """Base class of the guidances; register a subclass with :func:`otpr_sb3.guidance.register_guidance`.

    Subclasses implement :meth:`scores` and may override :meth:`grouped_scores`, :meth:`actor_loss`,
    :meth:`update` and :meth:`save_state`. ``owns_actor_update`` says that :meth:`actor_loss` replaces OTPR's choice of
    actor targets (``actor_targets``) rather than weighting replay targets.
    """

    name: ClassVar[str] = ""
    owns_actor_update: ClassVar[bool] = False

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.ready: th.Tensor
        self.register_buffer("ready", th.zeros((), dtype=th.bool))  # saved with the policy
        self._ready_host = False  # the same flag on the host: acting reads it without a device synchronisation

    @property
    def is_ready(self) -> bool:
        """Whether the guidance scores (``ready``), read on the host: no device synchronisation."""
        return self._ready_host

    def mark_ready(self, ready: bool = True) -> None:
        """Set :attr:`ready` (the saved buffer and the host copy that scoring reads)."""
        self.ready.fill_(ready)
        self._ready_host = bool(ready)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready_host = bool(self.ready)  # once, at load

    # ---- scoring ----------------------------------------------------------------------------------------

    def scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """Scores ``z`` and non-negative weights ``w`` of aligned pairs ``(n, obs_dim)``, ``(n, act_dim)``, once ready.

        Every guidance implements it (``nn.Module`` does not enforce abstract methods, so the base raises).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `scores`")

    @th.no_grad()
    def weights(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`scores`, or the expectile fallback before :attr:`ready`; shapes ``(n,)``."""
        if not self.is_ready:
            return expectile_weights(policy, obs_n, actions)
        return self.scores(policy, obs_n, actions, n_reference)

    @th.no_grad()
    def grouped_weights(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`weights` of each state with its own ``m`` actions ``(n, m, act_dim)``: shapes ``(n, m)``."""
        if self.is_ready:
            return self.grouped_scores(policy, obs_n, actions, n_reference)
        n, m = actions.shape[:2]
        z, w = expectile_weights(policy, obs_n.repeat_interleave(m, dim=0), actions.reshape(n * m, -1))
        return z.reshape(n, m), w.reshape(n, m)

    def grouped_scores(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`scores` of ``m`` actions per state; by default on the ``n * m`` repeated pairs."""
        n, m = actions.shape[:2]
        z, w = self.scores(policy, obs_n.repeat_interleave(m, dim=0), actions.reshape(n * m, -1), n_reference)
        return z.reshape(n, m), w.reshape(n, m)

    # ---- the actor --------------------------------------------------------------------------------------

    def actor_loss(
        self, policy: PolicyView, obs_n: th.Tensor, actions: th.Tensor, normalize: bool, n_reference: int | None = None
    ) -> tuple[th.Tensor | None, dict[str, float]]:
        """Loss of the actor on replay pairs, and what to log; ``None`` when no pair carries weight (no step).

        By default, score matching weighted by :meth:`weights` (divided by their sum when ``normalize``).
        """
        _, w = self.weights(policy, obs_n, actions, n_reference)
        return weighted_score_matching(policy, obs_n, actions, w, normalize)

    # ---- training ---------------------------------------------------------------------------------------

    def update(self, context: UpdateContext) -> dict[str, Any]:
        """Train what the guidance needs (nothing by default); return what to log (numbers or 0-dim tensors)."""
        return {}

    def set_keypoints(self, obs_n: th.Tensor, actions: th.Tensor) -> None:
        """Take matched expert pairs (prepared observations, scaled actions); ignored by default."""

    def setup_training(self, **settings: Any) -> None:
        """Prepare the training of what the guidance learns (nothing by default); OTPR passes its dual settings.

        Called again when settings change; a guidance keeps its training state across the calls.
        """

    def configure(self, **settings: Any) -> None:
        """Change settings of the guidance (none by default; unknown ones raise ``ValueError``)."""
        if settings:
            raise ValueError(f"the {self.name!r} guidance has no settings {sorted(settings)}")

    def log_values(self, policy: PolicyView) -> dict[str, float]:
        """Values to log after each training call (none by default)."""
        return {}

    def diagnostics(self, context: UpdateContext, batch_size: int) -> dict[str, float]:
        """Held-out diagnostics of what the guidance learns."""
        raise ValueError(f"the {self.name!r} guidance learns nothing to diagnose")

    def constructor_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this guidance as it is now (saved with the policy)."""
        return {}

    def save_state(self) -> dict[str, Any] | None:
        """Training state to save beside the policy's state dict (an optimiser, a generator), or ``None``."""
        return None

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`save_state` returned."""
