"""OTPR: Optimal-Transport-guided Policy Refinement of a diffusion policy (Algorithm 1 of the paper).

Sun et al., "Score-Based Diffusion Policy Compatible with Reinforcement Learning via Optimal Transport",
arXiv 2502.12631. The critic is IQL (twin Q, expectile V); the dual potentials come from a
:mod:`neural_ot` stochastic L2 dual with the critic cost of :mod:`otpr_sb3.critic_cost` (by default the
advantage ``-(Q - V)`` over its running spread, optionally mixed with a keypoint relation cost) and expert
pairs as keypoints (the mask); the actor is trained by H-weighted denoising score matching.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TensorDict
from stable_baselines3.common.utils import FloatSchedule
from tqdm.auto import tqdm

from neural_ot import L2Dual, dual_objective, plan, relative_marginal_errors, solve_discrete
from otpr_sb3.arguments import check_otpr_arguments
from otpr_sb3.demonstrations import Demonstrations, add_demonstrations
from otpr_sb3.policies import MultiInputPolicy, OTPRPolicy

SelfOTPR = TypeVar("SelfOTPR", bound="OTPR")

#: The paper's dual (eps 1e-5, dual minibatch 64, dual learning rate 1e-6, gradient ascent on learned u and v):
#: ``OTPR(..., **PAPER_DUAL)``.
PAPER_DUAL: dict[str, Any] = {
    "reg": 1e-5,
    "dual_batch_size": 64,
    "dual_learning_rate": 1e-6,
    "dual_method": "gradient",
    "reference_actions": 0,
}


#: Values of the settings left at ``None`` (``n_candidates`` and ``actor_learning_rate``: left out of
#: ``policy_kwargs``), by whether the actor was pretrained. ``pretrain`` switches to the fine-tuning column before its
#: behaviour cloning; ``learn`` resolves them again when it starts. The from-scratch column is the setting measured
#: in docs/from_scratch.rst, the fine-tuning column the one of the Fetch results (docs/results.rst).
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "fine-tuning": {
        "reg": 0.5,
        "dual_method": "semi-dual",
        "reference_actions": 48,
        "n_candidates": 8,
        "actor_learning_rate": 1e-4,
    },
    "from-scratch": {
        "reg": 0.05,
        "dual_method": "gradient",
        "reference_actions": 0,
        "n_candidates": 16,
        "actor_learning_rate": 3e-4,
    },
}
_POLICY_SETTINGS = ("n_candidates", "actor_learning_rate")


@th.no_grad()
def _polyak(source: th.nn.Module, target: th.nn.Module, rate: float) -> None:
    """``target <- (1 - rate) target + rate source`` over the parameters, in one foreach call.

    SB3's ``polyak_update`` loops over the parameters; this is the same update (up to float rounding).
    """
    targets: list[th.Tensor] = [p for p in target.parameters()]
    sources: list[th.Tensor] = [p for p in source.parameters()]
    if len(targets) != len(sources):
        raise ValueError(f"polyak update between modules of {len(sources)} and {len(targets)} parameters")
    th._foreach_lerp_(targets, sources, rate)


class OTPR(OffPolicyAlgorithm):
    """OTPR for Stable-Baselines3: a diffusion actor fine-tuned online with optimal-transport guidance.

    Demonstrations are optional. Without :meth:`pretrain` the actor starts untrained, acts uniformly at random
    for the first ``learning_starts`` steps (as SAC does), and the dual solves the unmasked problem: with no
    expert keypoints the keypoint mask is all ones. Keypoints from a later :meth:`pretrain` (or from a loaded
    model) switch the mask on from the next dual update.

    Parameters
    ----------
    policy : str or type
        ``"MlpPolicy"`` or ``"MultiInputPolicy"`` (dict observations).
    env : gymnasium env, VecEnv or str
    learning_rate : float or schedule
        Critic (Q, and V unless ``value_learning_rate`` is set in ``policy_kwargs``) learning rate; a schedule
        is evaluated at every :meth:`train` call, as in SB3, and logged as ``train/learning_rate``.
    buffer_size, batch_size, tau, gamma, train_freq, gradient_steps
        As in SAC; ``batch_size`` is the critic batch (256 in the paper).
    learning_starts : int
        Steps collected before training starts (100, as in SAC). Without demonstrations the observation
        statistics are fitted on the replay data at the first training step.
    actor_batch_size : int
        Batch of the H-weighted score-matching update.
    actor_ema : float
        EMA rate of the acting copy of the actor.
    actor_targets : {"replay", "candidates"} or None
        What the actor's score matching fits. ``"replay"``: replay pairs ``(s, a)`` weighted by ``H(s, a)``.
        This is Eq. 10 with the replay's own pairs in place of independent states and actions: Eq. 10
        integrates ``H`` over the product ``mu(s) nu(a)`` (the plan's conditional is ``H(s, a) nu(a)``), the
        replay pairs over ``mu(s) beta(a | s)`` with ``beta`` the policies that filled the replay, so the
        actor's target is ``H(s, a) beta(a | s)``; the product form on a minibatch gives most states no
        suitable action (the paper's Sec. 4.4). ``"candidates"``: the paper's remedy in Sec. 4.4 for
        minibatches where few replay pairs carry weight: for ``candidate_batch_size`` replay states, one action
        drawn from the L candidates of the acting actor and the replay action, with probabilities ``H / sum H``
        (the intended policy), fitted unweighted. It moves the actor towards the improved policy it collects
        with instead of towards old replay actions, and is the setting that learns from scratch (see
        docs/from_scratch.rst); it costs ``candidate_batch_size * L`` DDIM samples per actor update.
        ``None`` (default): ``"candidates"`` for an actor that was not pretrained, ``"replay"`` after
        :meth:`pretrain` (fine-tuning, where the replay holds the demonstrations).
    candidate_batch_size : int
        States per actor update with ``actor_targets="candidates"``.
    actor_loss : {"normalized", "mean"}
        Weighted score matching divided by the sum of the weights (each batch makes a full step), or the
        plain mean of ``w * err`` (a batch where the dual gives little mass makes a small step instead of
        hiding it; ``H`` of a solved dual averages 1 over independent states and actions, not necessarily
        over the replay's own pairs, see ``actor_targets``).
    dql_eta : float
        With ``policy_kwargs["guidance"] = "dql"`` (the Diffusion-QL-style baseline), the actor loss is the
        unweighted score matching on replay pairs minus ``dql_eta * mean Q(s, a_theta(s)) / mean |Q|``, with
        ``a_theta`` sampled by the K-step DDIM chain with its graph kept (Wang et al., 2023; their ``eta``).
        The Q term starts with the other guidances, after ``dual_start`` updates; the critic is OTPR's (IQL).
        Ignored by the other guidances.
    reg : float or None
        eps of the L2-regularised dual, on the normalised cost (by default ``-(Q - V)`` divided by a running
        spread of ``Q - V`` on replay pairs; see ``policy_kwargs["cost"]``). ``None`` (default): 0.5 once the
        actor is pretrained (chosen in docs/dual_study.rst), 0.05 from scratch (docs/from_scratch.rst); see
        :data:`DEFAULT_SETTINGS`, which ``dual_method``, ``reference_actions`` and the policy's ``n_candidates``
        and ``actor_learning_rate`` follow in the same way when left unset.
    dual_learning_rate, dual_batch_size, dual_steps : float, int, int
        Adam step size, minibatch and minibatches per training iteration of the potentials (warm-started).
    dual_steps_per_batch : int
        Adam steps on each dual minibatch. Its cost matrix (``dual_batch_size^2`` critic pairs, the expensive
        part) and, with ``dual_method="exact"``, its exact potentials are computed once and reused.
    dual_freq : int
        Train the potentials every ``dual_freq`` gradient steps (each update evaluates the critics on all
        ``dual_batch_size^2`` replay pairs; under the mask the keypoint pairs are solved in closed form).
    dual_start : int
        Dual updates before H is used for collection and actor weights (the fallback is used before). The
        Q and advantage guidances wait as long (counting the dual updates they would make), so every
        guidance has the same fallback period.
    dual_method : {"gradient", "semi-dual", "exact"} or None
        How each dual update moves the potentials: one Adam step of gradient ascent on the minibatch dual (the
        paper); semi-dual ascent in ``v`` with ``u`` regressed onto the minibatch c-transform of ``v``
        (:func:`neural_ot.c_transform`); or regression onto the exact potentials of the minibatch problem
        (solved by :func:`neural_ot.solve_discrete`). See :mod:`neural_ot.dual_updates`. ``None`` (default):
        ``"semi-dual"`` once the actor is pretrained, ``"gradient"`` from scratch.
    dual_eval_freq : int
        Every this many dual updates, :meth:`dual_diagnostics` on a held-out replay minibatch is logged as
        ``train/marginal_error`` and ``train/dual_gap`` (0 disables it; each costs one exact solve and
        ``dual_eval_batch_size^2`` critic pairs).
    dual_eval_batch_size : int
        States and actions of that held-out minibatch.
    reference_actions : int or None
        ``M > 0``: wherever ``H`` is evaluated (collection, actor weights, diagnostics), ``u(s)`` is the smooth
        c-transform of ``v`` over ``M`` replay actions redrawn at every dual update
        (:meth:`otpr_sb3.OTPRPolicy.state_potential`), which gives every state its mass against that sample,
        instead of the learned network (whose state-side error is the dual's main one on Fetch, see
        docs/dual_study.rst). It costs the critics on ``M`` pairs per collected state. 0: the learned ``u``.
        ``None`` (default): 48 once the actor is pretrained, 0 from scratch.
    actor_reference_actions : int
        How many of those reference actions give ``u`` for the actor's update (the H weights of replay targets,
        or the resampling of candidate targets): it costs the actor batch's states times this many critic pairs
        per actor update; fewer than ``reference_actions`` trades accuracy for speed (0: the learned ``u``).
    policy_delay : int
        Update the actor every ``policy_delay`` gradient steps (as TD3 delays its actor).
    use_mask : bool
        OTPR-M (keypoint mask from the expert pairs) if True, OTPR-U if False. Without expert pairs the
        mask has no keypoints and both are the same unmasked problem.
    n_keypoints : int
        Expert pairs used as keypoints: one fixed set of distinct pairs, drawn (seeded) by :meth:`pretrain`,
        that joins every dual minibatch under the mask and defines the relation cost.
    relation_weight : float
        Weight of the keypoint relation cost mixed with the critic cost (Eq. 13); it takes effect once expert
        keypoints exist. At 0 the mask cannot change the coupling of the replay pairs (OTPR-M = OTPR-U), at 1
        Q leaves the coupling (the authors' code). The default 0.1 keeps the mask active; on the Fetch snapshot
        of docs/what_h_does.rst no weight moved the expert states' mass towards their own actions, so whether
        it helps is open.
    random_warmup : bool or None
        Act uniformly at random for the first ``learning_starts`` steps. ``None`` (default): only if the
        actor was not pretrained; a pretrained actor acts from the first step.
    action_noise : stable_baselines3.common.noise.ActionNoise, optional
        As in SAC and TD3: added to the collected action (the candidate chosen by H, in SB3's scaled ``[-1, 1]``
        units, then clipped) during ``learn``; never to deterministic predictions.
    policy_kwargs : dict
        Passed to :class:`~otpr_sb3.policies.OTPRPolicy` (``n_candidates``, ``ddim_steps``, ``guidance``,
        ``expectile``, network sizes, ...).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": OTPRPolicy, "MultiInputPolicy": MultiInputPolicy}
    policy: OTPRPolicy

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
        actor_batch_size: int = 256,
        actor_ema: float = 0.995,
        actor_loss: str = "normalized",
        actor_targets: str | None = None,
        dql_eta: float = 1.0,
        candidate_batch_size: int = 64,
        reg: float | None = None,
        dual_learning_rate: float = 1e-3,
        dual_batch_size: int = 48,
        dual_steps: int = 1,
        dual_steps_per_batch: int = 1,
        dual_freq: int = 2,
        dual_start: int = 1000,
        dual_method: str | None = None,
        dual_eval_freq: int = 500,
        dual_eval_batch_size: int = 256,
        reference_actions: int | None = None,
        actor_reference_actions: int = 8,
        policy_delay: int = 2,
        use_mask: bool = True,
        n_keypoints: int = 16,
        relation_weight: float = 0.1,
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
        action_space = getattr(env, "action_space", None)
        if action_space is not None and not isinstance(action_space, spaces.Box):
            raise ValueError(f"OTPR needs a continuous (Box) action space, got {action_space}")
        # Settings left at None follow the actor's regime (DEFAULT_SETTINGS); an untrained actor starts from scratch.
        policy_kwargs = dict(policy_kwargs or {})
        given = {"reg": reg, "dual_method": dual_method, "reference_actions": reference_actions}
        auto = [k for k, v in given.items() if v is None] + [k for k in _POLICY_SETTINGS if k not in policy_kwargs]
        scratch = DEFAULT_SETTINGS["from-scratch"]
        policy_kwargs.update({k: scratch[k] for k in _POLICY_SETTINGS if k in auto})
        resolved = {k: scratch[k] if v is None else v for k, v in given.items()}
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            support_multi_env=True,
            supported_action_spaces=(spaces.Box,),
            sde_support=False,
        )
        self.actor_batch_size, self.actor_ema, self.actor_loss = actor_batch_size, actor_ema, actor_loss
        self.actor_targets, self.candidate_batch_size = actor_targets, int(candidate_batch_size)
        self.dql_eta = float(dql_eta)
        self.reg: float = float(resolved["reg"])
        self.dual_learning_rate = dual_learning_rate
        self.dual_batch_size, self.dual_steps, self.dual_start = dual_batch_size, dual_steps, dual_start
        self.dual_steps_per_batch = int(dual_steps_per_batch)
        self.dual_freq, self.policy_delay = dual_freq, policy_delay
        self.dual_method: str = str(resolved["dual_method"])
        self.dual_eval_freq, self.dual_eval_batch_size = int(dual_eval_freq), int(dual_eval_batch_size)
        self.reference_actions, self.actor_reference_actions = int(resolved["reference_actions"]), int(actor_reference_actions)
        self.use_mask, self.n_keypoints, self.relation_weight = use_mask, n_keypoints, relation_weight
        self.random_warmup = random_warmup
        self.default_settings: tuple[str, ...] = tuple(auto)  # the settings that follow DEFAULT_SETTINGS
        self.dual_updates = 0
        self.scale_updates = 0
        self.pretrained = False  # set by `pretrain`; saved with the model
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self._create_aliases()
        # Expert keypoints (set by `pretrain`); empty tensors rather than None so that `load` can restore them.
        self.expert_obs = th.zeros((0, self.policy.obs_dim), device=self.device)
        self.expert_actions = th.zeros((0, self.policy.act_dim), device=self.device)
        self._build_dual_solver()
        self._sync_dual_settings()
        self._told_unmasked = False
        self._told_no_demos = False
        # Held-out diagnostics draw from their own stream, so evaluating never changes training. Both streams are
        # saved with the model (a loaded model keeps the ones `load` restored), so a resumed run draws on.
        seed = 0 if self.seed is None else self.seed
        if not isinstance(getattr(self, "_eval_generator", None), th.Generator):
            self._eval_generator = th.Generator().manual_seed(1 + seed)
        if not isinstance(getattr(self, "_reference_generator", None), th.Generator):
            self._reference_generator = th.Generator().manual_seed(2 + seed)
        self._actor_lr = FloatSchedule(self.policy.arch["actor_learning_rate"])
        value_lr = self.policy.arch["value_learning_rate"]
        self._value_lr = None if value_lr is None else FloatSchedule(value_lr)

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        self.value = self.policy.value

    def _sync_dual_settings(self) -> None:
        """Give the policy's H and the dual's optimiser this algorithm's ``reg``, relation weight and dual rate.

        Called after set-up and after every :meth:`set_parameters`: a loaded policy state holds the saved
        values, which must not override those passed to ``OTPR.load(..., reg=...)`` (SB3's override semantics).
        """
        self.policy.reg.fill_(self.reg)
        self.policy.relation_weight.fill_(self.relation_weight)
        assert self.dual_solver.optimizer is not None
        for group in self.dual_solver.optimizer.param_groups:
            group["lr"] = self.dual_learning_rate

    def set_parameters(  # noqa: D102
        self, load_path_or_dict: str | TensorDict, exact_match: bool = True, device: th.device | str = "auto"
    ) -> None:
        super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)
        self._sync_dual_settings()

    def _build_dual_solver(self) -> None:
        # One solver for OTPR-M and OTPR-U: the keypoint mask is applied whenever keypoints are passed.
        self._dual_setup_key: tuple | None = None  # a new solver needs its problem set up
        self.dual_solver = L2Dual(
            self.reg,
            cost=self.policy.dual_cost,
            potentials=(self.policy.u, self.policy.v),
            learning_rate=self.dual_learning_rate,
            batch_size=self.dual_batch_size,
            steps_per_batch=getattr(self, "dual_steps_per_batch", 1),  # models saved before it existed
            max_steps=self.dual_steps,
            eval_every=10**9,
            eval_batch_size=32,
            device=str(self.device),
            seed=self.seed,
            method=self.dual_method,
        )
        self.dual_solver.build(self.policy.obs_dim, self.policy.act_dim)

    @property
    def regime(self) -> str:
        """``"fine-tuning"`` once the actor was pretrained (:meth:`mark_pretrained`), else ``"from-scratch"``."""
        return "fine-tuning" if self.pretrained else "from-scratch"

    def mark_pretrained(self) -> None:
        """Record that the actor is pretrained and give the settings left at ``None`` their fine-tuning values.

        :meth:`pretrain` calls it; call it after loading pretrained networks by other means (as the benchmark
        harness does with a shared checkpoint).
        """
        self.pretrained = True
        self._apply_default_settings()

    def _apply_default_settings(self) -> None:
        """Give the settings in ``default_settings`` the values of :data:`DEFAULT_SETTINGS` for the current regime."""
        values = DEFAULT_SETTINGS[self.regime]
        policy = self.policy
        current = {
            "reg": self.reg,
            "dual_method": self.dual_method,
            "reference_actions": self.reference_actions,
            **{k: policy.arch[k] for k in _POLICY_SETTINGS},
        }
        changed = {k: values[k] for k in self.default_settings if current[k] != values[k]}
        if not changed:
            return
        for name in ("reg", "dual_method", "reference_actions"):
            if name in changed:
                setattr(self, name, changed[name])
        for name in _POLICY_SETTINGS:
            if name in changed:  # the saved policy_kwargs rebuild the policy as it is now
                policy.arch[name] = self.policy_kwargs[name] = changed[name]
        if "n_candidates" in changed:
            policy.n_candidates = int(changed["n_candidates"])
        if "actor_learning_rate" in changed:
            self._actor_lr = FloatSchedule(changed["actor_learning_rate"])
            for group in policy.actor.optimizer.param_groups:
                group["lr"] = self._actor_lr(self._current_progress_remaining)
        if "reg" in changed or "dual_method" in changed:
            state = self.dual_solver.state_dict()  # the same optimiser state and minibatch stream
            self._build_dual_solver()
            self.dual_solver.load_state_dict(state)
            self._sync_dual_settings()
        if "reference_actions" in changed and not self.reference_actions:
            policy.set_reference_actions(policy.reference_actions[:0])

    def _set_keypoints(self) -> None:
        """Choose the keypoints: distinct expert pairs, seeded, shared by the mask and the relation cost."""
        gen = th.Generator().manual_seed(0 if self.seed is None else self.seed)
        pick = th.randperm(len(self.expert_actions), generator=gen)[: self.n_keypoints].to(self.expert_obs.device)
        self.policy.set_keypoints(self.expert_obs[pick], self.expert_actions[pick])

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
            Also store the demonstrations in the replay buffer (default). Fine-tuning fits the actor to
            H-weighted replay pairs (``actor_targets="replay"``), so without them there it is fitted to its own
            exploration only and drifts away from what behaviour cloning learned; ``False`` is the opt-out, for
            demonstrations added otherwise (:func:`~otpr_sb3.add_demonstrations`), and :meth:`learn` warns when
            the replay buffer is then empty.
        progress_bar : bool
        """
        if isinstance(demonstrations, Demonstrations):
            demos = demonstrations
        elif isinstance(demonstrations, str) or hasattr(demonstrations, "iterate_episodes"):
            demos = Demonstrations.from_minari(demonstrations, data_path)
        else:
            raise TypeError(
                "`demonstrations` must be a Demonstrations (e.g. Demonstrations.from_arrays(obs, actions, ...)), a "
                f"minari.MinariDataset or a local Minari dataset id, got {type(demonstrations).__name__}"
            )
        demos.check_spaces(self.observation_space, self.action_space)  # type: ignore[arg-type]
        policy = self.policy
        obs = self._demo_tensor(demos.observations)
        next_obs = self._demo_tensor(demos.next_observations)
        policy.set_obs_statistics(obs)
        obs_n, next_n = policy.prepare_obs(obs), policy.prepare_obs(next_obs)
        actions = th.as_tensor(policy.scale_action(demos.actions), device=self.device)
        actions = actions.reshape(len(demos), -1).float().clamp(-1, 1)
        rewards = th.as_tensor(demos.rewards, device=self.device).float()
        dones = th.as_tensor(demos.terminations, device=self.device).float()
        self.expert_obs, self.expert_actions = obs_n, actions
        self._set_keypoints()
        self.mark_pretrained()  # before cloning: the fine-tuning actor learning rate is the one BC uses
        gen = th.Generator(device="cpu").manual_seed(0 if self.seed is None else self.seed)
        critic_steps = n_steps // 2 if critic_steps is None else critic_steps
        policy.set_training_mode(True)
        for step in tqdm(range(max(n_steps, critic_steps)), disable=not progress_bar, desc="pretrain"):
            idx = th.randint(len(demos), (batch_size,), generator=gen).to(self.device)
            if step < n_steps:
                loss = policy.schedule.epsilon_loss(policy.actor, actions[idx], obs_n[idx])
                self._optimize(policy.actor.optimizer, loss)
                _polyak(policy.actor, policy.actor_ema, 1.0 - self.actor_ema)
            if step < critic_steps:
                self._iql_update(obs_n[idx], actions[idx], rewards[idx], next_n[idx], dones[idx])
        if add_to_replay_buffer:
            assert self.replay_buffer is not None
            add_demonstrations(self.replay_buffer, demos, self.action_space)  # type: ignore[arg-type]
        return self

    def _demo_tensor(self, obs: Any) -> th.Tensor:
        if isinstance(obs, dict):
            obs = {k: th.as_tensor(np.asarray(v), device=self.device) for k, v in obs.items()}
        else:
            obs = th.as_tensor(np.asarray(obs), device=self.device)
        return self.policy.flatten_obs(obs)

    # ---- updates ----------------------------------------------------------------------------------------

    @staticmethod
    def _optimize(optimizer: th.optim.Optimizer, loss: th.Tensor) -> None:
        if not bool(th.isfinite(loss)):
            raise FloatingPointError(f"OTPR loss became {float(loss)}; lower the learning rates or check rewards")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def _iql_update(
        self, obs: th.Tensor, act: th.Tensor, rew: th.Tensor, next_obs: th.Tensor, done: th.Tensor
    ) -> tuple[float, float]:
        policy = self.policy
        with th.no_grad():
            q_target = policy.critic_target.min(obs, act)
            # As in IQL, both losses use the networks before this step; V(s') needs no backward pass.
            v_next = policy.value(next_obs)
        v = policy.value(obs)
        diff = q_target - v
        weight = th.where(diff < 0, 1.0 - policy.expectile, policy.expectile)
        value_loss = (weight * diff.square()).mean()
        self._optimize(policy.value.optimizer, value_loss)
        self._update_scales(q_target, diff.detach())
        with th.no_grad():
            target = rew + (1.0 - done) * self.gamma * v_next
        q1, q2 = policy.critic(obs, act)
        critic_loss = 0.5 * ((q1 - target).square().mean() + (q2 - target).square().mean())
        self._optimize(policy.critic.optimizer, critic_loss)
        _polyak(policy.critic, policy.critic_target, self.tau)
        return float(critic_loss.detach()), float(value_loss.detach())

    @th.no_grad()
    def _update_scales(self, q: th.Tensor, adv: th.Tensor) -> None:
        """EMAs of the cost scale and of the spreads of Q and Q - V, from the critic update's own passes."""
        policy = self.policy
        adv_spread = adv.std().clamp_min(1e-3)
        stats = {
            "cost_scale": adv_spread if policy.cost == "advantage" else q.abs().mean().clamp_min(1e-3),
            "q_spread": q.std().clamp_min(1e-3),
            "adv_spread": adv_spread,
        }
        rate = 1.0 if self.scale_updates == 0 else 0.01
        for name, value in stats.items():
            getattr(policy, name).lerp_(value, rate)
        self.scale_updates += 1

    def _replay_sampler(self, kind: str) -> Any:
        """Return a sampler of normalised states or scaled actions from the replay buffer (for the dual)."""
        policy = self.policy

        def sample(n: int, gen: th.Generator) -> th.Tensor:
            buf = self.replay_buffer  # looked up at each call: `load_replay_buffer` replaces it
            assert buf is not None
            upper = buf.buffer_size if buf.full else buf.pos
            idx = th.randint(upper, (n,), generator=gen).numpy()
            env_idx = th.randint(buf.n_envs, (n,), generator=gen).numpy()
            if kind == "actions":
                return th.as_tensor(buf.actions[idx, env_idx], device=self.device).float()
            raw: np.ndarray | dict[str, np.ndarray]
            if isinstance(buf, DictReplayBuffer):
                raw = {k: v[idx, env_idx] for k, v in buf.observations.items()}
            else:
                raw = buf.observations[idx, env_idx]
            # As `ReplayBuffer.sample` does: observations through VecNormalize when the env has one.
            normalized = buf._normalize_obs(raw, self._vec_normalize_env)
            obs: th.Tensor | dict[str, th.Tensor]
            if isinstance(normalized, dict):
                obs = {k: th.as_tensor(v, device=self.device) for k, v in normalized.items()}
            else:
                obs = th.as_tensor(normalized, device=self.device)
            return policy.prepare_obs(obs)

        return sample

    def _setup_dual(self) -> None:
        """Fix the dual's problem (replay samplers, and the keypoints under the mask) when it changed."""
        policy = self.policy
        kwargs: dict[str, Any] = {}
        if self.use_mask and len(policy.keypoint_obs) == 0 and not self._told_unmasked:
            self._told_unmasked = True
            if self.verbose >= 1:
                print(
                    "OTPR: no expert keypoints (no `pretrain`), so the keypoint mask is all ones: the dual solves "
                    "unmasked OT"
                    + (" and the relation cost is off" if self.relation_weight > 0 else "")
                    + " until demonstrations provide keypoints."
                )
        keypoints = policy.keypoint_obs, policy.keypoint_actions
        masked = self.use_mask and len(keypoints[0]) > 0
        setup_key = (masked, keypoints[0].data_ptr(), keypoints[0]._version, keypoints[0].shape[0])
        if setup_key != self._dual_setup_key:  # first update, new keypoints (pretrain, load)
            if masked:
                K = len(keypoints[0])
                kwargs = dict(keypoints=keypoints, keypoint_mass=K / (K + self.dual_batch_size))
            self.dual_solver.setup(self._replay_sampler("obs"), self._replay_sampler("actions"), **kwargs)
            self._dual_setup_key = setup_key

    def _dual_update(self) -> dict[str, float]:
        policy = self.policy
        self._setup_dual()
        objective = th.zeros(())
        for _ in range(self.dual_steps):
            objective = self.dual_solver.step()
        if self.reference_actions:
            self._refresh_reference_actions()
        self.dual_updates += 1
        if self.dual_updates >= self.dual_start:
            policy.dual_ready.fill_(True)
        stats = {"dual_objective": float(objective)}
        if self.dual_eval_freq and self.dual_updates % self.dual_eval_freq == 0:
            stats.update(self.dual_diagnostics())
        return stats

    def _refresh_reference_actions(self) -> None:
        """Draw the reference actions of ``u(s)`` (replay actions), with the mass regular states can reach."""
        K = len(self.policy.keypoint_obs) if self.use_mask else 0
        mass = self.dual_batch_size / (K + self.dual_batch_size)  # the keypoints' share is theirs alone
        actions = self._replay_sampler("actions")(self.reference_actions, self._reference_generator)
        self.policy.set_reference_actions(actions, mass)

    @th.no_grad()
    def dual_diagnostics(self, batch_size: int | None = None) -> dict[str, float]:
        """How well the potentials solve the OT problem on a held-out replay minibatch.

        The minibatch (``batch_size`` states and actions, plus the keypoints with the mask when the mask is in
        use, carrying the share of mass they have in training) gets its
        cost matrix from the current critics. Then:

        - ``marginal_error``: relative L1 error of the marginals of the plan ``a_i b_j H_ij`` implied by the
          potentials (0 when they solve this minibatch problem; a Monte-Carlo quantity with a floor of
          order ``1 / sqrt(batch_size * fraction of non-zero H)`` for potentials of the population problem);
        - ``marginal_error_states`` and ``marginal_error_actions``: the same error for each marginal alone (the
          state marginal is the one that ``u`` controls, the action marginal ``v``);
        - ``dual_gap``: ``(D* - D(u, v)) / |D*|`` with ``D*`` the exact optimum of the same minibatch problem
          from :func:`neural_ot.solve_discrete` (>= 0 up to the solver's tolerance);
        - ``h_nonzero_frac_heldout``: the fraction of pairs with ``H > 0``.

        Parameters
        ----------
        batch_size : int, optional
            Defaults to ``dual_eval_batch_size``.

        Returns
        -------
        dict of str to float
        """
        assert self.replay_buffer is not None
        policy = self.policy
        self._setup_dual()
        # The training problem's own minibatch (keypoints and mask included), from the evaluation stream.
        batch = self.dual_solver.sample_batch(int(batch_size or self.dual_eval_batch_size), self._eval_generator)
        wx, wy, mask = batch.wx, batch.wy, batch.mask
        C = policy.dual_cost.matrix(batch.x, batch.y)
        # Keypoint pairs (under the mask) at their closed-form optimum, as the solver defines them.
        u, v = self.dual_solver.potentials_on(batch, potentials=(policy.u, policy.v))
        if len(policy.reference_actions):  # u as H uses it (keypoint rows keep their closed form)
            K = batch.n_keypoints
            u = th.cat([u[:K], policy.state_potential(batch.x[K:])])
        reg = float(policy.reg)
        T = plan(u, v, C, reg, wx, wy, mask=mask)
        error_states, error_actions = relative_marginal_errors(T.sum(1), T.sum(0), wx, wy)
        value = float(dual_objective(u, v, C, reg, wx, wy, mask))
        exact = solve_discrete(
            wx.double().cpu(),
            wy.double().cpu(),
            C.double().cpu(),
            reg,
            mask=None if mask is None else mask.double().cpu(),
            tol=1e-7,
        )
        best = float(exact.value_dual)
        return {
            "marginal_error": max(error_states, error_actions),
            "marginal_error_states": error_states,
            "marginal_error_actions": error_actions,
            "dual_gap": (best - value) / max(abs(best), 1e-12),
            "h_nonzero_frac_heldout": float((T > 0).float().mean()),  # weights are positive: T > 0 iff H > 0
        }

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """IQL critic, dual potentials and H-weighted actor updates on replay minibatches (Algorithm 1)."""
        policy = self.policy
        policy.set_training_mode(True)
        assert self.replay_buffer is not None
        if not bool(policy.obs_stats_ready):
            self._fit_obs_statistics()
        self._update_learning_rates()
        logs: dict[str, list[float]] = {}
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            obs, next_obs = policy.prepare_obs(data.observations), policy.prepare_obs(data.next_observations)
            rewards = data.rewards.reshape(-1)
            if not (bool(th.isfinite(obs).all()) and bool(th.isfinite(rewards).all())):
                raise ValueError("NaN or infinite values in replay observations or rewards")
            critic_loss, value_loss = self._iql_update(obs, data.actions, rewards, next_obs, data.dones.reshape(-1))
            stats = {"critic_loss": critic_loss, "value_loss": value_loss}
            if self._n_updates % self.dual_freq == 0:
                if policy.guidance == "compatibility":
                    stats.update(self._dual_update())
                else:  # no dual to train: the other guidances still wait the same number of updates
                    self.dual_updates += 1
                    if self.dual_updates >= self.dual_start:
                        policy.dual_ready.fill_(True)
            if self._n_updates % self.policy_delay == 0:
                stats.update(self._actor_update())
            for k, v in stats.items():
                logs.setdefault(k, []).append(v)
            self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/cost_scale", float(policy.cost_scale))
        self.logger.record("train/dual_ready", int(bool(policy.dual_ready)))
        for key, values in logs.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))

    def _fit_obs_statistics(self, max_samples: int = 100_000) -> None:
        """Standardise observations with statistics of the replay data (when no demonstrations set them)."""
        assert self.replay_buffer is not None
        n = min(self.replay_buffer.size() * self.n_envs, max_samples)
        data = self.replay_buffer.sample(max(n, 2), env=self._vec_normalize_env)
        self.policy.set_obs_statistics(self.policy.flatten_obs(data.observations))

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

    def _actor_update(self) -> dict[str, float]:
        if self.policy.guidance == "dql":
            return self._actor_update_dql()
        if self.actor_targets_in_use == "candidates":
            return self._actor_update_candidates()
        policy = self.policy
        assert self.replay_buffer is not None
        data = self.replay_buffer.sample(self.actor_batch_size, env=self._vec_normalize_env)
        obs = policy.prepare_obs(data.observations)
        n_ref = getattr(self, "actor_reference_actions", None)  # models saved before it existed: all references
        if policy.guidance == "expectile":  # IDQL: the actor fits the replay data unweighted; selection does the rest
            weights = th.ones(len(data.actions), device=self.device)
        else:
            _, weights = policy.candidate_scores(obs, data.actions, n_reference=n_ref)
        normalize = self.actor_loss == "normalized"
        loss = policy.schedule.epsilon_loss(policy.actor, data.actions, obs, weights, normalize=normalize)
        if float(weights.sum()) > 0:
            self._step_actor(loss)
        p = weights / weights.sum().clamp_min(1e-12)
        entropy = float(-(th.xlogy(p, p)).sum())
        return {
            "actor_loss": float(loss.detach()),
            "h_nonzero_frac": float((weights > 0).float().mean()),
            "h_entropy": entropy,
        }

    def _actor_update_candidates(self) -> dict[str, float]:
        """Fit the intended policy: per replay state, one of L actor candidates and the replay action, drawn by weight."""
        policy = self.policy
        assert self.replay_buffer is not None
        data = self.replay_buffer.sample(self.candidate_batch_size, env=self._vec_normalize_env)
        obs = policy.prepare_obs(data.observations)
        n_ref = getattr(self, "actor_reference_actions", None)  # models saved before it existed: all references
        targets, out = policy.resample_candidates(obs, extra_actions=data.actions, n_reference=n_ref)
        loss = policy.schedule.epsilon_loss(policy.actor, targets, obs)
        self._step_actor(loss)
        L = policy.n_candidates
        return {
            "actor_loss": float(loss.detach()),
            "target_replay_frac": float((out.index == L).float().mean()),
            "target_fallback_frac": float(out.fallback.float().mean()),
            "h_nonzero_frac": float((out.density > 0).float().mean()),
        }

    def _actor_update_dql(self) -> dict[str, float]:
        """Diffusion-QL: score matching on replay pairs minus ``dql_eta`` times the normalised Q of chain samples."""
        policy = self.policy
        assert self.replay_buffer is not None
        data = self.replay_buffer.sample(self.actor_batch_size, env=self._vec_normalize_env)
        obs = policy.prepare_obs(data.observations)
        loss = bc_loss = policy.schedule.epsilon_loss(policy.actor, data.actions, obs)
        logs = {"actor_bc_loss": float(bc_loss.detach())}
        if bool(policy.dual_ready) and self.dql_eta > 0:
            noise = th.randn_like(data.actions)
            actions = policy.schedule.ddim_sample(policy.actor, obs, noise, policy.ddim_steps, requires_grad=True)
            q = policy.critic.min(obs, actions)
            q_loss = -q.mean() / q.detach().abs().mean().clamp_min(1e-8)
            loss = bc_loss + self.dql_eta * q_loss
            logs["actor_q_loss"] = float(q_loss.detach())
        self._step_actor(loss)  # the critics' stray gradients are cleared by their own zero_grad before use
        return {"actor_loss": float(loss.detach()), **logs}

    def _step_actor(self, loss: th.Tensor) -> None:
        self._optimize(self.policy.actor.optimizer, loss)
        _polyak(self.policy.actor, self.policy.actor_ema, 1.0 - self.actor_ema)

    # ---- SB3 hooks --------------------------------------------------------------------------------------

    def dump_logs(self) -> None:  # noqa: D102
        # Share of collected states whose action was not chosen by H, since the last dump.
        counts = self.policy.selection_counts
        if counts["states"]:
            self.logger.record("rollout/h_fallback_frac", counts["fallback"] / counts["states"])
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
        replay_targets = self.policy.guidance == "dql" or self.actor_targets_in_use == "replay"
        if self.pretrained and replay_targets and self.replay_buffer.size() == 0 and not self._told_no_demos:
            self._told_no_demos = True
            warnings.warn(
                "OTPR.learn: the actor was pretrained but the replay buffer is empty, and fine-tuning fits the actor "
                "to replay pairs, so it will be fitted to its own exploration only and drift away from the "
                "demonstrations. Put them in the replay buffer: `pretrain(demos)` does by default "
                "(add_to_replay_buffer=True), or `otpr_sb3.add_demonstrations(model.replay_buffer, demos, "
                "model.action_space)`; or pass actor_targets='candidates'.",
                UserWarning,
                stacklevel=3,
            )
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
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

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
        """Load a saved model (SB3 ``load``); settings passed here as overrides no longer follow ``DEFAULT_SETTINGS``."""
        model = super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
        overridden = set(kwargs) | set(kwargs.get("policy_kwargs") or {})
        # A model saved before the settings followed the regime had them all fixed: none follows it.
        model.default_settings = tuple(k for k in getattr(model, "default_settings", ()) if k not in overridden)
        return model

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "critic_target",
            "value",
            "dual_solver",
            "expert_obs",
            "expert_actions",
            "_actor_lr",
            "_value_lr",
            "_told_unmasked",
            "_told_no_demos",
            "_dual_setup_key",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # `dual_solver` holds the dual's optimiser and its minibatch generator, so a resumed run draws the same batches.
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer", "value.optimizer", "dual_solver"]
        return state_dicts, ["expert_obs", "expert_actions"]
