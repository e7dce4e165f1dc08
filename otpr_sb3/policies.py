"""OTPR policy: diffusion actor (and its EMA), twin Q critics, value function and the OT potentials.

The actor acts in SB3's scaled action space ``[-1, 1]`` (``squash_output=True``), so ``predict``
returns actions in the environment's units. Observations, including dict observations such as the
goal-conditioned Fetch tasks, are flattened (keys in sorted order) and standardised with statistics
from the demonstrations.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import FloatSchedule

from neural_ot import MLPPotential, Resampled, c_transform, resample_from_scores
from otpr_sb3.arguments import check_policy_arguments
from otpr_sb3.critic_cost import COSTS, CriticCost
from otpr_sb3.diffusion import VPSchedule
from otpr_sb3.networks import ResidualMLPDenoiser, TwinQ, ValueNet

GUIDANCE = ("compatibility", "q", "advantage", "expectile", "dql")


def flat_obs_dim(space: spaces.Space) -> int:
    """Dimension of a Box or Dict-of-Box observation space once flattened."""
    if isinstance(space, spaces.Dict):
        return sum(flat_obs_dim(space.spaces[k]) for k in sorted(space.spaces))
    if isinstance(space, spaces.Box | spaces.MultiBinary):
        return int(np.prod(space.shape))
    raise TypeError(f"OTPR supports Box, MultiBinary and Dict observations of those, got {type(space).__name__}")


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
    potential_hidden : sequence of int
        Hidden sizes of the potentials u(s), v(a) (the paper: a 2-layer MLP).
    n_timesteps : int
        Diffusion training horizon T (20 in the paper).
    ddim_steps : int
        DDIM sampling steps K (<= T).
    n_candidates : int
        L, the candidates drawn per state during collection (8 in the paper). Left out of OTPR's
        ``policy_kwargs``, it follows :data:`otpr_sb3.otpr.DEFAULT_SETTINGS` (8 fine-tuning, 16 from scratch).
    guidance : {"compatibility", "q", "advantage", "expectile", "dql"}
        How candidates are weighted: by H (OTPR), by exp(Q), by exp(advantage), or (IDQL-style) by the expectile
        weights ``|tau - 1(Q < V)|`` with an unweighted actor update (score matching on replay pairs). ``"dql"``
        (Diffusion-QL-style) selects candidates as ``"q"`` does and trains the actor on unweighted score matching
        minus ``dql_eta`` times the normalised Q of actions sampled through the DDIM chain, whose gradient
        flows back through every denoising step (:class:`~otpr_sb3.otpr.OTPR`'s ``dql_eta``).
    cost : {"advantage", "q"}
        The dual's cost: ``-(Q - V) / spread(Q - V)`` (default; same plan as ``-Q``, see
        :mod:`otpr_sb3.critic_cost`) or the paper's ``-Q / mean|Q|``.
    expectile : float
        IQL expectile; also used by the fallback weights before the dual is trained.
    temperature : float
        Inverse temperature of the "q" and "advantage" weights, which are ``exp(temperature * score / spread)``
        with the running spread (standard deviation) of the score over critic batches. 1 (was 3): on Fetch from
        100 demonstrations the advantage guidance went 0.42 -> 0.86 at 1 and collapsed (0.02, 0.04) at 3 and 10;
        the "q" guidance went 0.42 -> 0.88 at 1 and 0.66 at 0.3 (docs/dual_study.rst, one seed each).
    actor_learning_rate, value_learning_rate : float or schedule
        Rates of the actor and of V (V follows the critic's ``learning_rate`` when ``None``); a schedule is a
        function of the remaining progress, as SB3's ``learning_rate``. ``actor_learning_rate`` left out of
        OTPR's ``policy_kwargs`` follows :data:`otpr_sb3.otpr.DEFAULT_SETTINGS` (1e-4 fine-tuning, 3e-4 from scratch).
    optimizer_class, optimizer_kwargs
        As in SB3. Adam and AdamW default to ``fused=True`` (pass ``fused`` or ``foreach`` to choose).
    eval_noise_seed : int or None
        Fixed noise of deterministic predictions: zeros by default (the DDIM image of the noise mode, which
        avoids the systematic offset a random fixed vector adds to every action), or a seeded draw.
    relation_rho : float
        Softmax temperature of the keypoint relation vectors (KPG's 0.1).
    pair_precision : {"auto", "float32", "bfloat16"}
        Precision of the critics' hidden layers when they run on many state-action pairs without gradients:
        the dual's cost matrix, ``H`` and ``u(s)`` over reference actions (:class:`~otpr_sb3.networks.TwinQ`).
        ``"auto"`` (default) is bfloat16 on CPUs with bfloat16 matrix instructions (AMX tiles or AVX512-BF16),
        float32 elsewhere (:func:`~otpr_sb3.networks.pair_dtype`). On FetchPickAndPlace it cut the fine-tuning step
        by 14% on an AMX CPU (2.4x to 2.0x SAC) and moved the exact minibatch plan by 0.25% in total variation
        (docs/benchmarks.rst); training and the Q/advantage guidances stay float32.

    Notes
    -----
    The policy holds everything :math:`H` needs, so that a policy saved and loaded on its own, or deep-copied,
    acts exactly as inside the algorithm: the potentials, ``reg``, the cost scale, the mixing weight of the
    relation cost and the relation keypoints are buffers of this module.
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
        potential_hidden: Sequence[int] = (128, 128),
        n_timesteps: int = 20,
        ddim_steps: int = 5,
        n_candidates: int = 8,
        guidance: str = "compatibility",
        cost: str = "advantage",
        expectile: float = 0.7,
        temperature: float = 1.0,
        actor_learning_rate: float | Schedule = 1e-4,
        value_learning_rate: float | Schedule | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        eval_noise_seed: int | None = None,
        relation_rho: float = 0.1,
        pair_precision: str = "auto",
    ) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"OTPR needs a continuous (Box) action space, got {type(action_space).__name__}")
        check_policy_arguments(locals(), GUIDANCE, COSTS)
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
        )
        self.obs_dim = flat_obs_dim(observation_space)
        self.act_dim = int(np.prod(action_space.shape))
        self.arch: dict[str, Any] = dict(
            actor_hidden_dim=actor_hidden_dim,
            actor_n_blocks=actor_n_blocks,
            time_dim=time_dim,
            critic_hidden=tuple(critic_hidden),
            potential_hidden=tuple(potential_hidden),
            n_timesteps=n_timesteps,
            ddim_steps=ddim_steps,
            n_candidates=n_candidates,
            guidance=guidance,
            cost=cost,
            expectile=expectile,
            temperature=temperature,
            actor_learning_rate=actor_learning_rate,
            value_learning_rate=value_learning_rate,
            eval_noise_seed=eval_noise_seed,
            relation_rho=relation_rho,
            pair_precision=pair_precision,
        )
        self.ddim_steps, self.n_candidates, self.guidance, self.cost = ddim_steps, n_candidates, guidance, cost
        self.expectile, self.temperature, self.relation_rho = expectile, temperature, relation_rho
        self._build(lr_schedule, actor_learning_rate, value_learning_rate)

    def _build(self, lr_schedule: Schedule, actor_lr: float | Schedule, value_lr: float | Schedule | None) -> None:
        a = self.arch
        self.schedule = VPSchedule(a["n_timesteps"])
        self.actor = ResidualMLPDenoiser(self.obs_dim, self.act_dim, a["actor_hidden_dim"], a["actor_n_blocks"], a["time_dim"])
        self.actor_ema = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = TwinQ(self.obs_dim, self.act_dim, a["critic_hidden"], a["pair_precision"])
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNet(self.obs_dim, a["critic_hidden"])
        self.u = MLPPotential(self.obs_dim, a["potential_hidden"])
        self.v = MLPPotential(self.act_dim, a["potential_hidden"])
        self.obs_mean: th.Tensor
        self.obs_std: th.Tensor
        self.cost_scale: th.Tensor
        self.reg: th.Tensor
        self.dual_ready: th.Tensor
        self.eval_noise: th.Tensor
        self.register_buffer("obs_mean", th.zeros(self.obs_dim))
        self.register_buffer("obs_std", th.ones(self.obs_dim))
        self.register_buffer("cost_scale", th.ones(()))
        # Running spreads of Q and of Q - V (standard deviations over critic batches) for the "q" and
        # "advantage" guidance weights.
        self.q_spread: th.Tensor
        self.adv_spread: th.Tensor
        self.register_buffer("q_spread", th.ones(()))
        self.register_buffer("adv_spread", th.ones(()))
        self.register_buffer("reg", th.full((), 0.1))
        self.register_buffer("dual_ready", th.zeros((), dtype=th.bool))
        # Whether obs_mean / obs_std were set (from demonstrations, or from the first replay data).
        self.obs_stats_ready: th.Tensor
        self.register_buffer("obs_stats_ready", th.zeros((), dtype=th.bool))
        # Mixing weight of the relation cost, and the keypoints (mask and relation cost; resized on load).
        self.relation_weight: th.Tensor
        self.keypoint_obs: th.Tensor
        self.keypoint_actions: th.Tensor
        self.register_buffer("relation_weight", th.zeros(()))
        self.register_buffer("keypoint_obs", th.zeros(0, self.obs_dim))
        self.register_buffer("keypoint_actions", th.zeros(0, self.act_dim))
        # Reference actions of the state potential (empty: u is the learned network; see `state_potential`).
        self.reference_actions: th.Tensor
        self.reference_mass: th.Tensor
        self.register_buffer("reference_actions", th.zeros(0, self.act_dim))
        self.register_buffer("reference_mass", th.ones(()))
        if a["eval_noise_seed"] is None:
            eval_noise = th.zeros(self.act_dim)
        else:
            eval_noise = th.randn(self.act_dim, generator=th.Generator().manual_seed(a["eval_noise_seed"]))
        self.register_buffer("eval_noise", eval_noise)
        self._cost = CriticCost(self)
        # States selected by collection, and how many of them by a fallback rather than by H.
        self.selection_counts = {"states": 0, "fallback": 0}
        opt = self.optimizer_class
        kwargs = dict(self.optimizer_kwargs)
        if opt in (th.optim.Adam, th.optim.AdamW) and not {"fused", "foreach"} & set(kwargs):
            # One fused kernel per step instead of a loop over parameters: 3-5x faster steps on CPU at these sizes
            # (the same update up to float rounding).
            kwargs["fused"] = True
        # Initial rates; the algorithm updates them from their schedules at every `train` call.
        actor_lr0 = FloatSchedule(actor_lr)(1.0)
        value_lr0 = lr_schedule(1) if value_lr is None else FloatSchedule(value_lr)(1.0)
        self.actor.optimizer = opt(self.actor.parameters(), lr=actor_lr0, **kwargs)  # type: ignore[call-arg]
        self.critic.optimizer = opt(self.critic.parameters(), lr=lr_schedule(1), **kwargs)  # type: ignore[call-arg]
        self.value.optimizer = opt(self.value.parameters(), lr=value_lr0, **kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("normalize_images", None)  # observations are standardised by the policy's own statistics
        data.update(self.arch)
        data.update(
            lr_schedule=self._dummy_schedule,  # the algorithm owns the schedule; not needed for a policy alone
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )
        return data

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The keypoint buffers change size when keypoints arrive: take the saved shape before copying.
        for name in ("keypoint_obs", "keypoint_actions", "reference_actions"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, th.empty(saved.shape, dtype=saved.dtype, device=getattr(self, name).device))
        # Policies saved before the reference state potential existed: the learned u, as they were trained.
        if prefix + "obs_mean" in state_dict and prefix + "reference_actions" not in state_dict:
            state_dict[prefix + "reference_actions"] = th.zeros(0, self.act_dim)
            state_dict[prefix + "reference_mass"] = th.ones(())
            self.reference_actions = th.zeros(0, self.act_dim, device=self.reference_actions.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- the dual's cost --------------------------------------------------------------------------------

    @th.no_grad()
    def set_keypoints(self, obs_n: th.Tensor, actions: th.Tensor) -> None:
        """Set the keypoints: standardised observations and scaled actions of matched expert pairs.

        They are the matched pairs of the keypoint mask and the anchors of the relation cost; empty tensors
        remove them.
        """
        if obs_n.shape[0] != actions.shape[0]:
            raise ValueError(f"`obs_n` and `actions` must have as many rows, got {obs_n.shape[0]} and {actions.shape[0]}")
        self.keypoint_obs = obs_n.detach().to(self.obs_mean.device, th.float32).reshape(-1, self.obs_dim).clone()
        self.keypoint_actions = actions.detach().to(self.obs_mean.device, th.float32).reshape(-1, self.act_dim).clone()

    @th.no_grad()
    def set_reference_actions(self, actions: th.Tensor, mass: float = 1.0) -> None:
        """Compute ``u(s)`` as the c-transform of ``v`` over these actions (scaled), carrying ``mass`` in all.

        ``mass`` is the share of the action measure that regular states can reach (below 1 under the keypoint
        mask, whose keypoint columns belong to their own keypoint rows). Empty ``actions`` switch back to the
        learned ``u``.
        """
        self.reference_actions = actions.detach().to(self.obs_mean.device, th.float32).reshape(-1, self.act_dim).clone()
        self.reference_mass.fill_(float(mass))

    @th.no_grad()
    def state_potential(self, obs_n: th.Tensor, n_reference: int | None = None) -> th.Tensor:
        """``u(s)`` for standardised observations: the learned network, or the c-transform over reference actions.

        With reference actions (:meth:`set_reference_actions`), ``u(s)`` is the smooth c-transform of ``v`` over
        them (:func:`neural_ot.c_transform`): the value that gives the state exactly its mass in the plan against
        that action sample. It costs the dual's cost on ``len(obs_n) x M`` pairs; ``n_reference`` uses only the
        first ``n_reference`` of them (a noisier estimate at a smaller cost; 0: the learned network).
        """
        ref = self._references(n_reference)
        if ref.shape[0] == 0:
            return self.u(obs_n)
        return self._reference_potential(ref, self._cost.matrix(obs_n, ref))

    def _references(self, n_reference: int | None) -> th.Tensor:
        """Return the first ``n_reference`` reference actions (all when ``None``)."""
        return self.reference_actions if n_reference is None else self.reference_actions[:n_reference]

    def _reference_potential(self, ref: th.Tensor, C_ref: th.Tensor) -> th.Tensor:
        """``u`` of states whose costs against the reference actions ``ref`` are the rows of ``C_ref``."""
        M = ref.shape[0]
        b = th.full((M,), float(self.reference_mass) / M, device=ref.device)
        return c_transform(self.v(ref), C_ref, float(self.reg), b=b)

    @property
    def uses_relation_cost(self) -> bool:
        """True when the relation cost is mixed in (positive weight and keypoints present)."""
        return float(self.relation_weight) > 0 and self.keypoint_obs.shape[0] > 0

    @property
    def dual_cost(self) -> CriticCost:
        """The dual's ground cost as a :class:`neural_ot.CostFn` (see :mod:`otpr_sb3.critic_cost`)."""
        return self._cost

    def pair_cost(self, obs_n: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Evaluate the dual's cost ``c(s_i, a_i)`` on aligned pairs (the cost the potentials are trained on).

        ``c = -(Q - V) / cost_scale`` (or ``-Q / cost_scale`` with ``cost="q"``); with relation weight ``w``
        and keypoints set, ``(1 - w) c + w JS(R_s, R_a)`` (Eq. 13).
        """
        return self._cost.paired(obs_n, actions)

    # ---- observations -----------------------------------------------------------------------------------

    def flatten_obs(self, obs: PyTorchObs) -> th.Tensor:
        """Flatten a (batched) observation tensor or dict of tensors to ``(n, obs_dim)``."""
        if isinstance(obs, dict):
            return th.cat([obs[k].reshape(obs[k].shape[0], -1).float() for k in sorted(obs)], dim=1)
        return obs.reshape(obs.shape[0], -1).float()

    def prepare_obs(self, obs: PyTorchObs) -> th.Tensor:
        """Flattened and standardised observations."""
        return (self.flatten_obs(obs) - self.obs_mean) / self.obs_std

    @th.no_grad()
    def set_obs_statistics(self, flat_obs: th.Tensor) -> None:
        """Standardise observations with the mean and std of ``flat_obs`` (constant features keep std 1)."""
        if flat_obs.ndim != 2 or flat_obs.shape[1] != self.obs_dim or flat_obs.shape[0] < 2:
            raise ValueError(f"`flat_obs` must have shape (n >= 2, {self.obs_dim}), got {tuple(flat_obs.shape)}")
        std = flat_obs.std(0)
        self.obs_mean.copy_(flat_obs.mean(0))
        self.obs_std.copy_(th.where(std > 1e-6, std, th.ones_like(std)))
        self.obs_stats_ready.fill_(True)

    # ---- acting -----------------------------------------------------------------------------------------

    @th.no_grad()
    def sample_actions(self, obs_n: th.Tensor, noise: th.Tensor, use_ema: bool = True) -> th.Tensor:
        """DDIM actions (scaled space) from ``noise`` ``(n, act_dim)`` for standardised observations."""
        model = self.actor_ema if use_ema else self.actor
        return self.schedule.ddim_sample(model, obs_n, noise, self.ddim_steps)

    @th.no_grad()
    def candidate_scores(
        self,
        obs_n: th.Tensor,
        actions: th.Tensor,
        n_reference: int | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Scores ``z`` and non-negative weights for aligned (state, action) pairs, per the guidance.

        - ``"compatibility"``: ``z = u(s) + v(a) - c(s, a)`` with the dual's cost (``c = -Q / cost_scale``, possibly
          mixed with the keypoint relation cost) and weight ``H = z_+ / (2 eps)`` (Eq. 15).
        - ``"q"``: ``exp(temperature * Q / spread(Q))``; ``"advantage"``: ``exp(temperature * (Q - V) / spread(Q - V))``,
          with running spreads over critic batches, both shifted by their maximum over the batch for stability.

        - ``"expectile"`` (IDQL-style): IDQL's expectile weights ``|tau - 1(Q < V)|`` at all times, ``z`` the advantage.
        - ``"dql"``: as ``"q"`` (its actor update is the Q-gradient, see :class:`~otpr_sb3.otpr.OTPR`).

        Until ``dual_ready`` (set after ``dual_start`` updates, whatever the guidance, so the ablations share the
        H guidance's start), every guidance uses IDQL's expectile weights ``|tau - 1(Q < V)|``, the documented
        fallback, with ``z`` the advantage.

        ``u(s)`` is :meth:`state_potential`'s, with ``n_reference`` reference actions.
        """
        if self.guidance == "compatibility" and bool(self.dual_ready):
            # The cost already holds the critics: no separate Q pass.
            z, w = self.compatibility(obs_n, actions.unsqueeze(1), n_reference)
            return z.squeeze(1), w.squeeze(1)
        q = self.critic.min(obs_n, actions)
        if self.guidance == "expectile" or not bool(self.dual_ready):
            adv = q - self.value(obs_n)
            return adv, th.where(adv < 0, 1.0 - self.expectile, self.expectile).to(q.dtype)
        if self.guidance in ("q", "dql"):
            score = self.temperature * q / self.q_spread
        else:
            score = self.temperature * (q - self.value(obs_n)) / self.adv_spread
        return score, th.exp(score - score.max())

    @th.no_grad()
    def compatibility(
        self, obs_n: th.Tensor, actions: th.Tensor, n_reference: int | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """``z = u(s_i) + v(a_ij) - c(s_i, a_ij)`` and ``H = z_+ / (2 eps)`` of each state with its own actions.

        Parameters
        ----------
        obs_n : torch.Tensor of shape (n, obs_dim)
            Standardised observations.
        actions : torch.Tensor of shape (n, m, act_dim)
            Scaled actions, ``m`` per state.
        n_reference : int, optional
            Reference actions of ``u(s)`` (:meth:`state_potential`); all by default, 0 for the learned ``u``.

        Returns
        -------
        z, H : torch.Tensor of shape (n, m)

        Notes
        -----
        With reference actions, the critics make one pass per state over its ``M`` reference actions and its
        ``m`` actions (:meth:`CriticCost.grouped <otpr_sb3.critic_cost.CriticCost.grouped>`), so ``V(s)`` and the
        state part of the first critic layer are computed once; ``u(s)`` is the c-transform of the first ``M``
        costs, as :meth:`state_potential` computes it.
        """
        if actions.ndim != 3 or actions.shape[0] != obs_n.shape[0] or actions.shape[2] != self.act_dim:
            raise ValueError(f"`actions` must have shape ({obs_n.shape[0]}, m, {self.act_dim}), got {tuple(actions.shape)}")
        n, m = actions.shape[0], actions.shape[1]
        ref = self._references(n_reference)
        M = ref.shape[0]
        if M:
            C = self._cost.grouped(obs_n, th.cat([ref.expand(n, M, self.act_dim), actions.to(ref.dtype)], dim=1))
            u = self._reference_potential(ref, C[:, :M])
            C = C[:, M:]
        else:
            C, u = self._cost.grouped(obs_n, actions), self.u(obs_n)
        z = u[:, None] + self.v(actions.reshape(n * m, self.act_dim)).reshape(n, m) - C
        return z, th.relu(z) / (2.0 * self.reg)

    @th.no_grad()
    def resample_candidates(
        self,
        obs_n: th.Tensor,
        extra_actions: th.Tensor | None = None,
        generator: th.Generator | None = None,
        n_reference: int | None = None,
    ) -> tuple[th.Tensor, Resampled]:
        """Draw one action per state from L DDIM candidates (and optionally one more given action), by weight.

        This is the "intended policy" of the paper's Sec. 4.4: candidates from the actor, reweighted by the
        guidance (:meth:`candidate_scores`) and resampled.

        Parameters
        ----------
        obs_n : torch.Tensor of shape (n, obs_dim)
            Standardised observations.
        extra_actions : torch.Tensor of shape (n, act_dim), optional
            One more candidate per state (the replay action, for the actor's targets), weighted like the others.
        generator : torch.Generator, optional
        n_reference : int, optional
            Reference actions of ``u(s)`` to use (:meth:`state_potential`); all by default.

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
        n_cand = cand.shape[1]
        if self.guidance == "compatibility" and bool(self.dual_ready):
            z, w = self.compatibility(obs_n, cand, n_reference)
        else:
            z, w = self.candidate_scores(obs_n.repeat_interleave(n_cand, dim=0), cand.reshape(n * n_cand, self.act_dim))
            z, w = z.reshape(n, n_cand), w.reshape(n, n_cand)
        out = resample_from_scores(z, w, generator)
        return cand[th.arange(n, device=obs_n.device), out.index], out

    @th.no_grad()
    def select_action(self, obs_n: th.Tensor, generator: th.Generator | None = None) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """Algorithm 1's collection step: L candidates by DDIM, weighted, one drawn per state."""
        if self.n_candidates == 1:
            noise = th.randn(obs_n.shape[0], self.act_dim, device=obs_n.device, generator=generator)
            return self.sample_actions(obs_n, noise), {}
        chosen, out = self.resample_candidates(obs_n, generator=generator)
        self.selection_counts["states"] += obs_n.shape[0]
        # Before the guidance is ready every state uses the expectile fallback; after, those where all H are 0.
        self.selection_counts["fallback"] += obs_n.shape[0] if not bool(self.dual_ready) else int(out.fallback.sum())
        return chosen, {"fallback": out.fallback, "probs": out.probs}

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        obs_n = self.prepare_obs(observation)
        if deterministic:
            # One DDIM sample from fixed noise: reproducible, identical before and after save/load.
            return self.sample_actions(obs_n, self.eval_noise.expand(obs_n.shape[0], -1).contiguous())
        return self.select_action(obs_n)[0]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions in the scaled space."""
        return self._predict(obs, deterministic)

    def set_training_mode(self, mode: bool) -> None:  # noqa: D102
        if getattr(self, "_mode", None) == mode:  # called at every predict: skip the module walk
            return
        for m in (self.actor, self.critic, self.value, self.u, self.v):
            m.train(mode)
        self.training = self._mode = mode


MlpPolicy = OTPRPolicy


class MultiInputPolicy(OTPRPolicy):
    """OTPR policy for dict observations (flattened by sorted key), e.g. goal-conditioned robotics tasks."""
