"""OTPR policy: the diffusion actor (and its EMA), the IQL critics and a guidance that picks among candidates.

The actor acts in SB3's scaled action space ``[-1, 1]`` (``squash_output=True``), so ``predict`` returns actions
in the environment's units. Observations go through SB3's features extractor (``FlattenExtractor``, or
``CombinedExtractor`` for dict observations such as the goal-conditioned Fetch tasks) and are then standardised
with statistics from the demonstrations (or the first replay data).

An extractor with parameters (``CnnPolicy``'s ``NatureCNN``, or ``CombinedExtractor`` over image keys) is trained by
the critic loss alone, as the encoder in DrQ: the actor, V, the target values and the guidance take its features
detached. Its features are not standardised, since their statistics move while it trains.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import FloatSchedule

from neural_ot import Resampled, resample_from_scores
from otpr_sb3.arguments import check_policy_arguments
from otpr_sb3.critics import RunningScales, TwinQCritic, ValueNet
from otpr_sb3.diffusion import VPSchedule
from otpr_sb3.guidance import GUIDANCES, Guidance, make_guidance
from otpr_sb3.networks import ResidualMLPDenoiser

#: Arguments of :class:`OTPRPolicy` saved in ``arch`` (and so with the policy).
ARCH_ARGUMENTS = (
    "actor_hidden_dim actor_n_blocks time_dim critic_hidden n_timesteps ddim_steps n_candidates guidance expectile "
    "actor_learning_rate value_learning_rate eval_noise_seed eval_candidates pair_precision"
).split()


class OTPRPolicy(BasePolicy):
    """Policy of :class:`~otpr_sb3.OTPR`.

    Parameters
    ----------
    observation_space, action_space : gymnasium spaces
        ``action_space`` must be a ``Box``.
    lr_schedule : callable
        Learning-rate schedule of the critics (SB3 convention).
    actor_hidden_dim, actor_n_blocks, time_dim : int
        Residual-MLP noise predictor (DPPO-like); the default is the "3x256" actor.
    critic_hidden : sequence of int
        Hidden sizes of Q and V (the paper uses [256]*3 or [512]*3).
    n_timesteps : int
        Diffusion training horizon T (20 in the paper).
    ddim_steps : int
        DDIM sampling steps K (<= T).
    n_candidates : int
        L, the candidates drawn per state during collection (8 in the paper). Left out of OTPR's ``policy_kwargs``, it
        follows :data:`otpr_sb3.defaults.DEFAULT_SETTINGS`.
    guidance : str
        A registered guidance (:data:`otpr_sb3.guidance.GUIDANCES`): ``"compatibility"`` (H, OTPR), ``"q"``,
        ``"advantage"``, ``"expectile"`` (IDQL-style) or ``"dql"`` (Diffusion-QL-style).
    guidance_kwargs : dict, optional
        Keyword arguments of the guidance (e.g. ``temperature`` of ``"q"``, ``cost`` and ``potential_hidden`` of
        ``"compatibility"``, ``eta`` of ``"dql"``); see :mod:`otpr_sb3.guidance`.
    expectile : float
        IQL expectile; also used by the fallback weights before the guidance is ready.
    actor_learning_rate, value_learning_rate : float or schedule
        Rates of the actor and of V (V follows the critic's ``learning_rate`` when ``None``); a schedule is a function
        of the remaining progress, as SB3's ``learning_rate``. ``actor_learning_rate`` left out of OTPR's
        ``policy_kwargs`` follows :data:`otpr_sb3.defaults.DEFAULT_SETTINGS`.
    optimizer_class, optimizer_kwargs
        As in SB3. Adam and AdamW default to ``fused=True`` (pass ``fused`` or ``foreach`` to choose).
    eval_noise_seed : int or None
        Fixed noise of deterministic predictions: zeros by default (the DDIM image of the noise mode), or a seeded draw.
    eval_candidates : int
        Candidates of a deterministic prediction. 1 (default): the DDIM sample of the fixed noise. N > 1: N DDIM
        samples of N fixed noises (seeded by ``eval_noise_seed``, or 0), and the one with the highest guidance
        score; with the expectile guidance this is IDQL's greedy policy extraction.
    pair_precision : {"auto", "float32", "bfloat16"}
        Precision of the critics' hidden layers on many pairs without gradients (:func:`otpr_sb3.critics.pair_dtype`).
    features_extractor_class, features_extractor_kwargs, normalize_images
        As in SB3. An extractor with parameters is trained by the critic loss (see the module docstring);
        ``trains_features`` says which case applies.

    Notes
    -----
    The policy holds everything the guidance needs, so that a policy saved and loaded on its own, or deep-copied,
    acts exactly as inside the algorithm.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        actor_hidden_dim: int = 256,
        actor_n_blocks: int = 3,
        time_dim: int = 32,
        critic_hidden: Sequence[int] = (256, 256, 256),
        n_timesteps: int = 20,
        ddim_steps: int = 5,
        n_candidates: int = 8,
        guidance: str = "compatibility",
        guidance_kwargs: dict[str, Any] | None = None,
        expectile: float = 0.7,
        actor_learning_rate: float | Schedule = 1e-4,
        value_learning_rate: float | Schedule | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        eval_noise_seed: int | None = None,
        eval_candidates: int = 1,
        pair_precision: str = "auto",
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
    ) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"OTPR needs a continuous (Box) action space, got {type(action_space).__name__}")
        given = dict(locals())
        check_policy_arguments(given, tuple(GUIDANCES))
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
        )
        self.features_extractor = self.make_features_extractor()
        self.trains_features = any(True for _ in self.features_extractor.parameters())
        self.obs_dim = self.features_extractor.features_dim
        self.act_dim = math.prod(action_space.shape)
        # The architecture and settings saved with the policy (its constructor's arguments but the SB3 ones).
        self.arch: dict[str, Any] = {name: given[name] for name in ARCH_ARGUMENTS}
        self.arch["critic_hidden"] = tuple(critic_hidden)
        self.ddim_steps, self.n_candidates, self.expectile = ddim_steps, n_candidates, expectile
        self._build(lr_schedule, dict(guidance_kwargs or {}))

    def _build(self, lr_schedule: Schedule, guidance_kwargs: dict[str, Any]) -> None:
        a = self.arch
        self.schedule = VPSchedule(a["n_timesteps"])
        self.actor = ResidualMLPDenoiser(self.obs_dim, self.act_dim, a["actor_hidden_dim"], a["actor_n_blocks"], a["time_dim"])
        self.actor_ema = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = TwinQCritic(self.obs_dim, self.act_dim, a["critic_hidden"], a["pair_precision"])
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNet(self.obs_dim, a["critic_hidden"])
        self.guidance: Guidance = make_guidance(a["guidance"], self.obs_dim, self.act_dim, self, **guidance_kwargs)
        self.scales = RunningScales()
        self.obs_mean: th.Tensor
        self.obs_std: th.Tensor
        self.obs_stats_ready: th.Tensor
        self.eval_noise: th.Tensor
        self.register_buffer("obs_mean", th.zeros(self.obs_dim))
        self.register_buffer("obs_std", th.ones(self.obs_dim))
        self.register_buffer("obs_stats_ready", th.zeros((), dtype=th.bool))  # set from demonstrations or replay data
        if a["eval_noise_seed"] is None:
            eval_noise = th.zeros(self.act_dim)
        else:
            eval_noise = th.randn(self.act_dim, generator=th.Generator().manual_seed(a["eval_noise_seed"]))
        self.register_buffer("eval_noise", eval_noise)
        # The fixed noises of `eval_candidates` > 1, a function of the constructor's arguments (so not saved).
        N, gen = a["eval_candidates"], th.Generator().manual_seed(a["eval_noise_seed"] or 0)
        candidate_noise = th.randn(N, self.act_dim, generator=gen) if N > 1 else th.zeros(0, self.act_dim)
        self.eval_candidate_noise: th.Tensor
        self.register_buffer("eval_candidate_noise", candidate_noise, persistent=False)
        # States selected by collection, and how many of them by a fallback rather than by the guidance.
        self.selection_counts: dict[str, Any] = {"states": 0, "fallback": 0}  # fallback: an int or a device tensor
        self._build_optimizers(lr_schedule)

    def _build_optimizers(self, lr_schedule: Schedule) -> None:
        opt, kwargs = self.optimizer_class, dict(self.optimizer_kwargs)
        if opt in (th.optim.Adam, th.optim.AdamW) and not {"fused", "foreach"} & set(kwargs):
            kwargs["fused"] = True  # one kernel per step instead of a loop over parameters (same update up to rounding)
        # Initial rates; the algorithm updates them from their schedules at every `train` call.
        actor_lr0 = FloatSchedule(self.arch["actor_learning_rate"])(1.0)
        value_lr = self.arch["value_learning_rate"]
        value_lr0 = lr_schedule(1) if value_lr is None else FloatSchedule(value_lr)(1.0)
        self.actor.optimizer = opt(self.actor.parameters(), lr=actor_lr0, **kwargs)  # type: ignore[call-arg]
        critic_params = [*self.critic.parameters(), *self.features_extractor.parameters()]  # the critic trains features
        self.critic.optimizer = opt(critic_params, lr=lr_schedule(1), **kwargs)  # type: ignore[call-arg]
        self.critic.keep_pair_weights(self.critic.optimizer)  # not the target critic, which moves through `.data`
        self.value.optimizer = opt(self.value.parameters(), lr=value_lr0, **kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.arch)
        data.update(
            guidance_kwargs=self.guidance.constructor_kwargs(),
            lr_schedule=self._dummy_schedule,  # the algorithm owns the schedule; not needed for a policy alone
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    # ---- observations -----------------------------------------------------------------------------------

    def features(self, obs: PyTorchObs, grad: bool = False) -> th.Tensor:
        """Observations through SB3's ``preprocess_obs`` and the features extractor: ``(n, obs_dim)``.

        With ``grad=False`` (everything but the critic's loss) a trained extractor gives detached features.
        """
        if grad or not self.trains_features:
            return self.extract_features(obs, self.features_extractor)
        with th.no_grad():
            return self.extract_features(obs, self.features_extractor)

    def standardize(self, features: th.Tensor) -> th.Tensor:
        """Standardise features with the policy's observation statistics."""
        return (features - self.obs_mean) / self.obs_std

    def prepare_obs(self, obs: PyTorchObs, grad: bool = False) -> th.Tensor:
        """Features, standardised: what the actor, the critics and the guidance take (``grad``: see :meth:`features`)."""
        return self.standardize(self.features(obs, grad))

    @th.no_grad()
    def set_obs_statistics(self, features: th.Tensor) -> None:
        """Standardise with the mean and std of these features (:meth:`features`; constant ones keep std 1)."""
        if features.ndim != 2 or features.shape[1] != self.obs_dim or features.shape[0] < 2:
            raise ValueError(f"`features` must have shape (n >= 2, {self.obs_dim}), got {tuple(features.shape)}")
        std = features.std(0)
        self.obs_mean.copy_(features.mean(0))
        self.obs_std.copy_(th.where(std > 1e-6, std, th.ones_like(std)))
        self.obs_stats_ready.fill_(True)

    @property
    def has_obs_statistics(self) -> bool:
        """Whether observation statistics are set; read on the host (a device read only until they are)."""
        if not getattr(self, "_obs_stats_host", False):
            self._obs_stats_host = bool(self.obs_stats_ready)
        return self._obs_stats_host

    @th.no_grad()
    def fit_obs_statistics(self, obs: PyTorchObs) -> None:
        """Standardise with the statistics of these observations' features.

        Features of a trained extractor are left as they are (mean 0, std 1): their statistics move as it trains.
        """
        if self.trains_features:
            self.obs_stats_ready.fill_(True)
        else:
            self.set_obs_statistics(self.features(obs))

    # ---- acting -----------------------------------------------------------------------------------------

    @th.no_grad()
    def sample_actions(self, obs_n: th.Tensor, noise: th.Tensor, use_ema: bool = True) -> th.Tensor:
        """DDIM actions (scaled space) from ``noise`` ``(n, act_dim)`` for prepared observations."""
        model = self.actor_ema if use_ema else self.actor
        return self.schedule.ddim_sample(model, obs_n, noise, self.ddim_steps)

    @th.no_grad()
    def candidate_scores(
        self, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """Scores and non-negative weights of aligned pairs by the guidance.

        See :meth:`otpr_sb3.guidance.Guidance.weights` (the expectile fallback until the guidance is ready).
        """
        return self.guidance.weights(self, obs_n, actions, n_reference)

    @th.no_grad()
    def resample_candidates(
        self,
        obs_n: th.Tensor,
        extra_actions: th.Tensor | None = None,
        generator: th.Generator | None = None,
        n_reference: int | None = None,
    ) -> tuple[th.Tensor, Resampled]:
        """Draw one action per state from L DDIM candidates (and optionally one more given action), by weight.

        This is the "intended policy" of the paper's Sec. 4.4: candidates from the actor, weighted by the guidance and
        resampled.

        Parameters
        ----------
        obs_n : torch.Tensor of shape (n, obs_dim)
            Prepared observations.
        extra_actions : torch.Tensor of shape (n, act_dim), optional
            One more candidate per state (the replay action, for the actor's targets), weighted like the others.
        generator : torch.Generator, optional
        n_reference : int, optional
            Reference actions of the guidance's ``u(s)``; all by default.

        Returns
        -------
        actions : torch.Tensor of shape (n, act_dim)
        resampled : neural_ot.Resampled
            Index of the chosen candidate (``L`` for ``extra_actions``), probabilities and fallback flags.
        """
        n, L = obs_n.shape[0], self.n_candidates
        noise = th.randn(n * L, self.act_dim, device=obs_n.device, generator=generator)
        cand = self.sample_actions(obs_n.repeat_interleave(L, dim=0), noise).reshape(n, L, self.act_dim)
        if extra_actions is not None:
            if extra_actions.shape != (n, self.act_dim):
                raise ValueError(f"`extra_actions` must have shape ({n}, {self.act_dim}), got {tuple(extra_actions.shape)}")
            cand = th.cat([cand, extra_actions.to(cand.dtype).unsqueeze(1)], dim=1)
        z, w = self.guidance.grouped_weights(self, obs_n, cand, n_reference)
        out = resample_from_scores(z, w, generator)
        return cand[th.arange(n, device=obs_n.device), out.index], out

    @th.no_grad()
    def select_action(self, obs_n: th.Tensor, generator: th.Generator | None = None) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """Algorithm 1's collection step: L candidates by DDIM, weighted by the guidance, one drawn per state."""
        if self.n_candidates == 1:
            noise = th.randn(obs_n.shape[0], self.act_dim, device=obs_n.device, generator=generator)
            return self.sample_actions(obs_n, noise), {}
        chosen, out = self.resample_candidates(obs_n, generator=generator)
        self.selection_counts["states"] += obs_n.shape[0]
        # Before the guidance is ready every state uses the expectile fallback; after, those where all weights are 0.
        # Counted on the device (read when logs are dumped): acting never waits for it.
        fallback = out.fallback.sum() if self.guidance.is_ready else obs_n.shape[0]
        self.selection_counts["fallback"] = self.selection_counts["fallback"] + fallback
        return chosen, {"fallback": out.fallback, "probs": out.probs}

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``, refusing observations with NaN or infinite entries (a NaN action otherwise).

        Checked with numpy on the observation as given, before it reaches the device.
        """
        items = observation.items() if isinstance(observation, dict) else [("observation", observation)]
        for key, value in items:
            if not isinstance(value, th.Tensor) and not np.isfinite(np.asarray(value)).all():
                raise ValueError(
                    f"the observation ({key!r}) contains NaN or infinite values: check the environment (SB3's "
                    "VecCheckNan wrapper finds the step that produced it)"
                )
        return super().predict(observation, state, episode_start, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        obs_n = self.prepare_obs(observation)
        if deterministic:
            # DDIM samples from fixed noise: reproducible, identical before and after save/load.
            n, N = obs_n.shape[0], self.eval_candidate_noise.shape[0]
            if N == 0:
                return self.sample_actions(obs_n, self.eval_noise.expand(n, -1).contiguous())
            noise = self.eval_candidate_noise.repeat(n, 1)
            cand = self.sample_actions(obs_n.repeat_interleave(N, dim=0), noise).reshape(n, N, self.act_dim)
            z, _ = self.guidance.grouped_weights(self, obs_n, cand)
            return cand[th.arange(n, device=obs_n.device), z.argmax(1)]
        return self.select_action(obs_n)[0]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions in the scaled space."""
        return self._predict(obs, deterministic)

    def set_training_mode(self, mode: bool) -> None:
        """Put every module in training (``True``) or evaluation mode, as ``nn.Module.train(mode)`` does.

        SB3 calls this at every ``predict`` and twice per env step (collection, then training). Nothing is walked when
        the policy's own ``training`` flag already says ``mode`` (``policy.train()``/``eval()`` keep that flag, so they
        are honoured; a sub-module switched on its own is left as it is). Otherwise the flag is set on every module
        directly, in a third of ``nn.Module.train``'s time on OTPR's ~130 modules (``benchmarks/test_bench_otpr.py``),
        unless one of them overrides ``train``, whose override is then called.
        """
        if not isinstance(mode, bool):
            raise ValueError(f"`mode` must be a bool, got {mode!r}")
        if self.training == mode:
            return
        modules = list(self.modules())
        if any(type(module).train is not th.nn.Module.train for module in modules):
            self.train(mode)
            return
        for module in modules:
            module.__dict__["training"] = mode  # what nn.Module.train sets, without its recursion through __setattr__


MlpPolicy = OTPRPolicy


class CnnPolicy(OTPRPolicy):
    """OTPR policy for image observations: SB3's ``NatureCNN``, trained by the critic loss (see the module docstring)."""

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Box, lr_schedule: Schedule, **kwargs: Any
    ) -> None:
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


class MultiInputPolicy(OTPRPolicy):
    """OTPR policy for dict observations (SB3's ``CombinedExtractor``), e.g. goal-conditioned robotics tasks."""

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Box, lr_schedule: Schedule, **kwargs: Any
    ) -> None:
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
