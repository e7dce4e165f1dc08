"""OTPR: Optimal-Transport-guided Policy Refinement of a diffusion policy (Algorithm 1 of the paper).

Sun et al., "Score-Based Diffusion Policy Compatible with Reinforcement Learning via Optimal Transport",
arXiv 2502.12631. The critic is IQL (twin Q, expectile V, :mod:`otpr_sb3.critics`); the guidance
(:mod:`otpr_sb3.guidance`) scores the actor's candidates, by default with the compatibility H of an L2-regularised
OT dual between replay states and actions with expert pairs as keypoints; the actor is trained by H-weighted
denoising score matching. docs/design.rst draws the components.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule

from otpr_sb3.arguments import check_otpr_arguments, merge_saved
from otpr_sb3.defaults import DEFAULT_SETTINGS, PAPER_DUAL, RegimeDefaults, resolve_settings, warn_fine_tuning_on_empty_replay
from otpr_sb3.demonstrations import Demonstrations, add_demonstrations
from otpr_sb3.expert_pairs import ExpertPairs
from otpr_sb3.guidance import GuidanceTrainingState, UpdateContext
from otpr_sb3.policies import CnnPolicy, MultiInputPolicy, OTPRPolicy
from otpr_sb3.pretraining import as_demonstrations, behaviour_cloning, demonstration_tensors
from otpr_sb3.replay_sampling import ReplaySampler
from otpr_sb3.updates import actor_step, candidate_targets_loss, check_finite, iql_update, sampled_next_actions

SelfOTPR = TypeVar("SelfOTPR", bound="OTPR")
# SAC's arguments, passed on to SB3 as they are.
_OFF_POLICY_ARGUMENTS = (
    "learning_rate buffer_size learning_starts batch_size tau gamma train_freq gradient_steps action_noise "
    "replay_buffer_class replay_buffer_kwargs stats_window_size tensorboard_log verbose device seed"
).split()
#: Settings of the algorithm that belong to its guidance (forwarded to ``policy_kwargs["guidance_kwargs"]``).
GUIDANCE_SETTINGS = ("reg", "relation_weight")

__all__ = ["DEFAULT_SETTINGS", "OTPR", "PAPER_DUAL"]


class OTPR(RegimeDefaults, ExpertPairs, OffPolicyAlgorithm):
    """OTPR for Stable-Baselines3: a diffusion actor fine-tuned online with optimal-transport guidance.

    Demonstrations are optional. Without :meth:`pretrain` the actor starts untrained, acts uniformly at random for the
    first ``learning_starts`` steps (as SAC does), and the dual solves the unmasked problem (no expert keypoints).

    Parameters
    ----------
    policy : str or type
        ``"MlpPolicy"``, ``"CnnPolicy"`` (images; the CNN is trained by the critic loss) or ``"MultiInputPolicy"``
        (dict observations).
    env : gymnasium env, VecEnv or str
    learning_rate : float or schedule
        Critic (Q, and V unless ``value_learning_rate`` is set in ``policy_kwargs``) learning rate; a schedule is
        evaluated at every :meth:`train` call, as in SB3.
    buffer_size, learning_starts, batch_size, tau, gamma, train_freq, gradient_steps
        As in SAC; ``batch_size`` is the critic batch (256 in the paper). Without demonstrations the observation
        statistics are fitted on the replay data at the first training step.
    actor_targets : {"replay", "candidates"} or None
        What the actor's score matching fits. ``"replay"``: replay pairs ``(s, a)`` weighted by the guidance (Eq. 10 on
        the replay's own pairs, so the target is ``H(s, a) beta(a|s)`` with ``beta`` the policies that filled the
        replay). ``"candidates"``: the paper's Sec. 4.4: per replay state, one of the acting actor's L candidates and
        the replay action drawn with probabilities ``H / sum H``, fitted unweighted once the guidance is ready (replay
        targets before). ``None`` (default): ``"candidates"`` from scratch, ``"replay"`` after :meth:`pretrain`.
    critic_backup : {"value", "policy"}
        The Q target's next-state value. ``"value"`` (default): IQL's in-sample ``V(s')``. ``"policy"``: the
        target critics' ``min(Q1, Q2)(s', a')`` at an action ``a'`` sampled from the acting actor (Diffusion-QL's
        Bellman backup); V is still fitted, for the guidances that read it.
    actor_kwargs : dict, optional
        ``batch_size`` (256) of the replay-target update, ``ema`` (0.995) of the acting copy, ``loss``
        (``"normalized"``: weighted score matching divided by the sum of the weights; ``"mean"``: the plain mean),
        ``candidate_batch_size`` (64) states per candidate-target update, ``reference_actions`` (8) of ``u(s)`` in the
        actor's update (0: the learned ``u``).
    reg : float or None
        eps of the L2-regularised dual, on the normalised cost. ``None``: follows the regime (:data:`DEFAULT_SETTINGS`).
    use_mask : bool
        OTPR-M (keypoint mask from the expert pairs) if True, OTPR-U if False.
    relation_weight : float or None
        Weight of the keypoint relation cost mixed with the critic cost once keypoints exist (Eq. 13); ``None``: the
        guidance's default (0.1).
    dual_freq : int
        Update the guidance (train the potentials) every ``dual_freq`` gradient steps.
    dual_start : int
        Guidance updates before the guidance is used (the expectile fallback before); the same for every guidance.
    dual_kwargs : dict, optional
        The dual's solver: ``method`` (``"gradient"``, ``"semi-dual"`` or ``"exact"``, :mod:`neural_ot.dual_updates`;
        unset: follows the regime), ``learning_rate`` (1e-3), ``batch_size`` (48), ``steps`` (1) minibatches per update,
        ``steps_per_batch`` (1), ``reference_actions`` (``M > 0``: ``u(s)`` is the c-transform of ``v`` over ``M``
        replay actions redrawn at every update; unset: follows the regime), ``unbalanced`` (``None``: balanced; ``rho``:
        the action marginal relaxed with strength ``rho``, :mod:`neural_ot.relaxation`), ``n_keypoints`` (16) expert
        pairs of the mask, ``eval_freq`` (500; 0: off) and ``eval_batch_size`` (256) of the held-out diagnostics.
    policy_delay : int
        Update the actor every ``policy_delay`` gradient steps (as TD3 delays its actor).
    random_warmup : bool or None
        Act uniformly at random for the first ``learning_starts`` steps; ``None``: only if the actor was not pretrained.
    action_noise : ActionNoise, optional
        As in SAC: added to the collected action (in SB3's scaled units, then clipped) during ``learn``.
    policy_kwargs : dict
        Passed to :class:`~otpr_sb3.policies.OTPRPolicy` (``n_candidates``, ``guidance``, ``guidance_kwargs``, ...).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": OTPRPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: OTPRPolicy
    _eval_generator: th.Generator
    _reference_generator: th.Generator

    def __init__(
        self,
        policy: str | type[OTPRPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        actor_targets: str | None = None,
        actor_kwargs: dict[str, Any] | None = None,
        critic_backup: str = "value",
        reg: float | None = None,
        use_mask: bool = True,
        relation_weight: float | None = None,
        dual_freq: int = 2,
        dual_start: int = 1000,
        dual_kwargs: dict[str, Any] | None = None,
        policy_delay: int = 2,
        random_warmup: bool | None = None,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        check_otpr_arguments(locals())
        # Settings left unset follow the actor's regime (DEFAULT_SETTINGS); an untrained actor starts from scratch.
        settings = resolve_settings(reg, relation_weight, dual_kwargs, actor_kwargs, policy_kwargs)
        self.default_settings: tuple[str, ...] = settings.unset
        self.dual_kwargs, self.actor_kwargs = settings.dual_kwargs, settings.actor_kwargs
        given = locals()
        super().__init__(
            policy,
            env,
            policy_kwargs=settings.policy_kwargs,
            support_multi_env=True,
            supported_action_spaces=(spaces.Box,),
            sde_support=False,
            **{name: given[name] for name in _OFF_POLICY_ARGUMENTS},
        )
        self.actor_targets, self.use_mask, self.random_warmup = actor_targets, use_mask, random_warmup
        self.critic_backup = critic_backup
        self.dual_freq, self.dual_start, self.policy_delay = dual_freq, dual_start, policy_delay
        self.dual_updates = 0
        self.pretrained = False  # set by `pretrain`; saved with the model
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._complete_settings()
        super()._setup_model()
        self._create_aliases()
        self._init_expert_pairs()
        self.policy.guidance.setup_training(**self._training_settings())
        self._told_no_demos = False
        self._sampler = ReplaySampler(self)
        # Diagnostics and reference actions draw from streams of their own, saved: evaluating never changes training.
        seed = 0 if self.seed is None else self.seed
        for offset, name in ((1, "_eval_generator"), (2, "_reference_generator")):
            if not isinstance(getattr(self, name, None), th.Generator):  # a loaded model keeps its restored streams
                setattr(self, name, th.Generator().manual_seed(offset + seed))
        self._actor_lr = FloatSchedule(self.policy.arch["actor_learning_rate"])
        value_lr = self.policy.arch["value_learning_rate"]
        self._value_lr = None if value_lr is None else FloatSchedule(value_lr)

    def _create_aliases(self) -> None:
        self.actor, self.critic, self.critic_target = self.policy.actor, self.policy.critic, self.policy.critic_target
        self.value = self.policy.value

    # ---- demonstrations ---------------------------------------------------------------------------------

    def pretrain(
        self: SelfOTPR,
        demonstrations: Demonstrations | Any,
        n_steps: int = 10_000,
        batch_size: int = 256,
        critic_steps: int | None = None,
        add_to_replay_buffer: bool = True,
        data_path: str | None = None,
        progress_bar: bool = False,
    ) -> SelfOTPR:
        """Behaviour cloning of the diffusion actor by denoising score matching (Eq. 7/21), plus IQL on the demos.

        Parameters
        ----------
        demonstrations : Demonstrations, minari.MinariDataset or str
            Expert data; a string is a Minari dataset id in the local directory (``data_path``).
        n_steps : int
            Actor gradient steps.
        batch_size : int
        critic_steps : int, optional
            IQL steps on the demonstrations (default ``n_steps // 2``; 0 to skip).
        add_to_replay_buffer : bool
            Also store the demonstrations in the replay buffer (default): fine-tuning fits the actor to replay pairs,
            without them it drifts away from what it cloned (docs/defaults.rst). ``False``: added otherwise
            (:func:`~otpr_sb3.add_demonstrations`); :meth:`learn` warns if the replay buffer is then empty.
        data_path : str, optional
            Directory of local Minari datasets.
        progress_bar : bool
        """
        demos = as_demonstrations(demonstrations, data_path)
        demos.check_spaces(self.observation_space, self.action_space)  # type: ignore[arg-type]
        data = demonstration_tensors(self.policy, demos)
        self._set_expert_pairs(data[0], data[1])
        self.mark_pretrained()  # before cloning: the fine-tuning actor learning rate is the one behaviour cloning uses
        critic_steps = n_steps // 2 if critic_steps is None else critic_steps
        seed, ema = 0 if self.seed is None else self.seed, self.actor_kwargs["ema"]
        behaviour_cloning(self.policy, data, n_steps, critic_steps, batch_size, seed, ema, self.gamma, self.tau, progress_bar)
        if add_to_replay_buffer:
            assert self.replay_buffer is not None
            add_demonstrations(self.replay_buffer, demos, self.action_space)  # type: ignore[arg-type]
        return self

    # ---- updates ----------------------------------------------------------------------------------------

    def _update_context(self, diagnostics_batch_size: int = 0) -> UpdateContext:
        sampler = self._sampler
        gens = (self._reference_generator, self._eval_generator)
        return UpdateContext(self.policy, sampler.states, sampler.actions, *gens, diagnostics_batch_size, self.verbose)

    def dual_diagnostics(self, batch_size: int | None = None) -> dict[str, float]:
        """How well the guidance's potentials solve a held-out replay minibatch of the training problem.

        See :meth:`DualTrainer.diagnostics <otpr_sb3.guidance.dual_training.DualTrainer.diagnostics>`; drawn from the
        evaluation stream, so it never changes training.

        Parameters
        ----------
        batch_size : int, optional
            Defaults to ``dual_kwargs["eval_batch_size"]``.
        """
        size = int(batch_size or self.dual_kwargs["eval_batch_size"])
        return self.policy.guidance.diagnostics(self._update_context(), size)

    def _guidance_update(self) -> dict[str, Any]:
        """Update the guidance (the dual, for H), and make it ready after ``dual_start`` updates."""
        self.dual_updates += 1
        self._refresh_keypoint_features()
        eval_freq = self.dual_kwargs["eval_freq"]
        diagnose = bool(eval_freq) and self.dual_updates % eval_freq == 0
        stats = self.policy.guidance.update(self._update_context(self.dual_kwargs["eval_batch_size"] if diagnose else 0))
        if self.dual_updates >= self.dual_start:
            self.policy.guidance.mark_ready()
        return stats

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """IQL critic, guidance and actor updates on replay minibatches (Algorithm 1)."""
        policy = self.policy
        policy.set_training_mode(True)
        assert self.replay_buffer is not None
        if not policy.has_obs_statistics:
            self._fit_obs_statistics()
        self._update_learning_rates()
        logs: dict[str, list[Any]] = {}
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            # Only the critic's loss trains a features extractor (`iql_update` detaches the rest).
            obs, next_obs = policy.prepare_obs(data.observations, grad=True), policy.prepare_obs(data.next_observations)
            rewards = data.rewards.reshape(-1)
            finite = th.isfinite(obs.detach()).all() & th.isfinite(rewards).all()
            check_finite(finite, "NaN or infinite values in replay observations or rewards")
            batch = (obs, data.actions, rewards, next_obs, data.dones.reshape(-1))
            next_actions = sampled_next_actions(policy, next_obs) if self.critic_backup == "policy" else None
            critic_loss, value_loss = iql_update(policy, policy.critic_target, batch, self.gamma, self.tau, next_actions)
            stats: dict[str, Any] = {"critic_loss": critic_loss, "value_loss": value_loss}
            if self._n_updates % self.dual_freq == 0:
                stats.update(self._guidance_update())
            if self._n_updates % self.policy_delay == 0:
                stats.update(self._actor_update())
            for k, v in stats.items():
                logs.setdefault(k, []).append(v)
            self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        # Log values stay on the device until here: one synchronisation for all of them.
        guidance_logs = policy.guidance.log_values(policy)
        series = {**{k: [v] for k, v in guidance_logs.items()}, **logs}
        dev = self.device
        means = [th.stack([th.as_tensor(v, dtype=th.float32, device=dev) for v in vals]).mean() for vals in series.values()]
        values = dict(zip(series, th.stack(means).tolist() if means else []))
        values["dual_ready"] = int(policy.guidance.is_ready)
        for key in [*guidance_logs, "dual_ready", *logs]:
            self.logger.record(f"train/{key}", values[key])

    def _fit_obs_statistics(self, max_samples: int = 100_000) -> None:
        """Standardise observations with statistics of the replay data (when no demonstrations set them)."""
        assert self.replay_buffer is not None
        n = 2 if self.policy.trains_features else min(self.replay_buffer.size() * self.n_envs, max_samples)
        data = self.replay_buffer.sample(max(n, 2), env=self._vec_normalize_env)
        self.policy.fit_obs_statistics(data.observations)

    def _update_learning_rates(self) -> None:
        # Critic (and V without its own rate) follow `learning_rate`, logged as train/learning_rate (SB3).
        policy = self.policy
        self._update_learning_rate([policy.critic.optimizer] + ([policy.value.optimizer] if self._value_lr is None else []))
        for name, schedule, optimizer in (
            ("actor_learning_rate", self._actor_lr, policy.actor.optimizer),
            ("value_learning_rate", self._value_lr, policy.value.optimizer),
        ):
            if schedule is None:
                continue
            lr = schedule(self._current_progress_remaining)
            for group in optimizer.param_groups:
                group["lr"] = lr
            self.logger.record(f"train/{name}", lr)

    @property
    def actor_targets_in_use(self) -> str:
        """``actor_targets``, with ``None`` resolved (``"candidates"`` unless the actor was pretrained)."""
        if self.actor_targets is not None:
            return self.actor_targets
        return "replay" if self.pretrained else "candidates"

    def _actor_update(self) -> dict[str, Any]:
        policy, kw = self.policy, self.actor_kwargs
        assert self.replay_buffer is not None
        guidance = policy.guidance  # not ready: candidates would fit the actor to its own samples (docs/claims.rst)
        candidates = self.actor_targets_in_use == "candidates" and not guidance.owns_actor_update and guidance.is_ready
        size = kw["candidate_batch_size"] if candidates else kw["batch_size"]
        data = self.replay_buffer.sample(size, env=self._vec_normalize_env)
        obs = policy.prepare_obs(data.observations)
        logs: dict[str, Any]
        if candidates:  # the intended policy: per state, one of L candidates and the replay action, drawn by weight
            loss, logs = candidate_targets_loss(policy, obs, data.actions, kw["reference_actions"])
        else:
            normalize = kw["loss"] == "normalized"
            step_loss, logs = guidance.actor_loss(policy, obs, data.actions, normalize, kw["reference_actions"])
            if step_loss is None:  # no pair carries weight: no step
                return logs
            loss = step_loss
        actor_step(policy.actor, policy.actor_ema, loss, kw["ema"])
        return logs

    # ---- SB3 hooks --------------------------------------------------------------------------------------

    def dump_logs(self) -> None:  # noqa: D102
        # Share of collected states whose action was not chosen by the guidance, since the last dump.
        counts = self.policy.selection_counts
        if counts["states"]:
            self.logger.record("rollout/h_fallback_frac", float(counts["fallback"]) / counts["states"])
            counts["states"] = counts["fallback"] = 0
        super().dump_logs()

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        warmup = (not self.pretrained) if self.random_warmup is None else self.random_warmup
        # Uniform warm-up as in SAC for an untrained actor; a pretrained actor acts from the first step.
        return super()._sample_action(learning_starts if warmup else 0, action_noise, n_envs)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: Any,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        values = new_obs.values() if isinstance(new_obs, dict) else [new_obs]
        if not (np.isfinite(reward).all() and all(np.isfinite(v).all() for v in values)):
            raise ValueError("the environment returned NaN or infinite observations or rewards")
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def _setup_learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        self._apply_default_settings()
        assert self.replay_buffer is not None
        replay_targets = self.policy.guidance.owns_actor_update or self.actor_targets_in_use == "replay"
        if self.pretrained and replay_targets and self.replay_buffer.size() == 0 and not self._told_no_demos:
            self._told_no_demos = True
            warn_fine_tuning_on_empty_replay()
        return super()._setup_learn(total_timesteps, *args, **kwargs)

    def learn(
        self: SelfOTPR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "OTPR",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOTPR:
        """Fine-tune online (SB3 ``learn``)."""
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    @classmethod
    def load(
        cls,
        path: str | Any,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> OTPR:
        """Load a saved model (SB3 ``load``); settings passed here as overrides no longer follow ``DEFAULT_SETTINGS``.

        ``reg`` and ``relation_weight`` given here are applied to the loaded guidance; ``dual_kwargs`` and
        ``actor_kwargs`` given here update the saved ones key by key.
        """
        guidance_settings = {k: kwargs.pop(k) for k in GUIDANCE_SETTINGS if k in kwargs}
        overridden = set(kwargs) | set(guidance_settings) | set(kwargs.get("dual_kwargs") or {})
        overridden |= set(kwargs.get("policy_kwargs") or {})
        if {"dual_kwargs", "actor_kwargs"} & set(kwargs):
            saved, _, _ = load_from_zip_file(path, device=device, custom_objects=custom_objects)
            merge_saved(kwargs, saved or {})
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        if guidance_settings:
            model._configure_guidance(**guidance_settings)
        model.default_settings = tuple(k for k in model.default_settings if k not in overridden)
        return model

    def _excluded_save_params(self) -> list[str]:
        excluded = ["actor", "critic", "critic_target", "value", "expert_obs", "expert_actions", "_actor_lr", "_value_lr"]
        # The keypoints' own raw observations (`keypoint_raw_obs`) are saved, not `_expert_raw_obs`.
        return [*super()._excluded_save_params(), *excluded, "_expert_raw_obs", "_told_no_demos", "_sampler"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The guidance's training state (the dual's optimiser and minibatch generator), so a resumed run draws the same
        # batches.
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer", "value.optimizer", "guidance_training"]
        return state_dicts, ["expert_obs", "expert_actions"]

    @property
    def guidance_training(self) -> GuidanceTrainingState:
        """The guidance's training state, saved and loaded as SB3 saves optimisers."""
        return GuidanceTrainingState(lambda: self.policy.guidance)
