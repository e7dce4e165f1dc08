"""OTPR: Optimal-Transport-guided Policy Refinement of a diffusion policy (Algorithm 1 of the paper).

Sun et al., "Score-Based Diffusion Policy Compatible with Reinforcement Learning via Optimal Transport",
arXiv 2502.12631. The critic is IQL (twin Q, expectile V); the dual potentials come from
:class:`neural_ot.MaskedL2Dual` with cost ``-Q / scale`` (optionally mixed with a keypoint relation
cost) and expert pairs as keypoints; the actor is trained by H-weighted denoising score matching.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import polyak_update
from tqdm.auto import tqdm

from neural_ot import CallableCost, CostFn, KeypointRelationCost, L2Dual, MaskedL2Dual, MixedCost
from otpr_sb3.demonstrations import Demonstrations
from otpr_sb3.policies import MultiInputPolicy, OTPRPolicy

SelfOTPR = TypeVar("SelfOTPR", bound="OTPR")
_DUAL_EVAL_EVERY = 100


class OTPR(OffPolicyAlgorithm):
    """OTPR for Stable-Baselines3: a diffusion actor fine-tuned online with optimal-transport guidance.

    Parameters
    ----------
    policy : str or type
        ``"MlpPolicy"`` or ``"MultiInputPolicy"`` (dict observations).
    env : gymnasium env, VecEnv or str
    learning_rate : float or schedule
        Critic (Q and V) learning rate.
    buffer_size, batch_size, tau, gamma, train_freq, gradient_steps
        As in SAC; ``batch_size`` is the critic batch (256 in the paper).
    learning_starts : int
        Steps before training starts. The pretrained actor acts from the first step: uniform random actions
        are used only if ``random_warmup=True``.
    actor_batch_size : int
        Batch of the H-weighted score-matching update.
    actor_ema : float
        EMA rate of the acting copy of the actor.
    reg : float
        eps of the L2-regularised dual, on the normalised cost ``-Q / scale`` (``scale`` is an EMA of
        ``mean |Q|``), so that small values stay numerically safe.
    dual_learning_rate, dual_batch_size, dual_steps : float, int, int
        Adam step size, minibatch and steps per training iteration of the potentials (warm-started).
    dual_freq : int
        Train the potentials every ``dual_freq`` gradient steps (each update evaluates Q on all
        ``(dual_batch_size + n_keypoints)^2`` pairs, the costliest part of OTPR).
    dual_start : int
        Dual updates before H is used for collection and actor weights (the fallback is used before).
    policy_delay : int
        Update the actor every ``policy_delay`` gradient steps (as TD3 delays its actor).
    use_mask : bool
        OTPR-M (keypoint mask from the expert pairs) if True, OTPR-U if False.
    n_keypoints : int
        Expert pairs joining every dual minibatch.
    relation_weight : float
        Weight of the keypoint relation cost mixed with ``-Q / scale`` (0 keeps the paper's ``-Q``).
    random_warmup : bool
        Use uniform random actions for the first ``learning_starts`` steps (as SAC does).
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
        learning_starts: int = 0,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        actor_batch_size: int = 256,
        actor_ema: float = 0.995,
        reg: float = 0.05,
        dual_learning_rate: float = 1e-3,
        dual_batch_size: int = 48,
        dual_steps: int = 1,
        dual_freq: int = 2,
        dual_start: int = 1000,
        policy_delay: int = 2,
        use_mask: bool = True,
        n_keypoints: int = 16,
        relation_weight: float = 0.0,
        random_warmup: bool = False,
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
        for name, value in (
            ("actor_batch_size", actor_batch_size),
            ("dual_batch_size", dual_batch_size),
            ("dual_steps", dual_steps),
            ("n_keypoints", n_keypoints),
        ):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if not reg > 0:
            raise ValueError(f"`reg` must be positive, got {reg}")
        if not 0.0 <= relation_weight <= 1.0:
            raise ValueError(f"`relation_weight` must be in [0, 1], got {relation_weight}")
        if not 0.0 < actor_ema < 1.0:
            raise ValueError(f"`actor_ema` must be in (0, 1), got {actor_ema}")
        action_space = getattr(env, "action_space", None)
        if action_space is not None and not isinstance(action_space, spaces.Box):
            raise ValueError(f"OTPR needs a continuous (Box) action space, got {action_space}")
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
            action_noise=None,
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
        self.actor_batch_size, self.actor_ema = actor_batch_size, actor_ema
        self.reg, self.dual_learning_rate = reg, dual_learning_rate
        self.dual_batch_size, self.dual_steps, self.dual_start = dual_batch_size, dual_steps, dual_start
        self.dual_freq, self.policy_delay = dual_freq, policy_delay
        self.use_mask, self.n_keypoints, self.relation_weight = use_mask, n_keypoints, relation_weight
        self.random_warmup = random_warmup
        self.dual_updates = 0
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self._create_aliases()
        self.policy.reg.fill_(self.reg)
        # Expert keypoints (set by `pretrain`); empty tensors rather than None so that `load` can restore them.
        self.expert_obs = th.zeros((0, self.policy.obs_dim), device=self.device)
        self.expert_actions = th.zeros((0, self.policy.act_dim), device=self.device)
        self._build_dual_solver()
        self.policy.pair_cost = self._pair_cost

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        self.value = self.policy.value

    def _build_dual_solver(self) -> None:
        solver_cls = MaskedL2Dual if self.use_mask else L2Dual
        self.dual_solver = solver_cls(
            self.reg,
            cost=self._dual_cost(),
            potentials=(self.policy.u, self.policy.v),
            learning_rate=self.dual_learning_rate,
            batch_size=self.dual_batch_size,
            max_steps=self.dual_steps,
            eval_every=10**9,
            eval_batch_size=32,
            device=str(self.device),
            seed=self.seed,
        )
        self.dual_solver.build(self.policy.obs_dim, self.policy.act_dim)

    def _neg_q(self, obs_n: th.Tensor, act: th.Tensor) -> th.Tensor:
        with th.no_grad():
            return -self.policy.critic.min(obs_n, act) / self.policy.cost_scale

    def _pair_cost(self, obs_n: th.Tensor, act: th.Tensor) -> th.Tensor:
        """Evaluate the dual's cost on aligned pairs (what H must use)."""
        self._sync_dual_cost()
        return self.dual_solver.cost.paired_matrix(obs_n, act)

    def _sync_dual_cost(self) -> None:
        """Mix in the relation cost once expert keypoints exist (they may arrive after the solver is built)."""
        if self.relation_weight > 0 and not isinstance(self.dual_solver.cost, MixedCost) and len(self.expert_actions):
            self.dual_solver.cost = self._dual_cost()

    def _dual_cost(self) -> CostFn:
        base = CallableCost(self._neg_q, kind="paired")
        if self.relation_weight == 0.0 or len(self.expert_actions) == 0:
            return base
        gen = th.Generator().manual_seed(0 if self.seed is None else self.seed)
        pick = th.randperm(len(self.expert_actions), generator=gen)[: self.n_keypoints]
        relation = KeypointRelationCost(self.expert_obs[pick], self.expert_actions[pick], rho=0.1)
        return MixedCost(base, relation, self.relation_weight)

    # ---- demonstrations ---------------------------------------------------------------------------------

    def pretrain(
        self: SelfOTPR,
        demonstrations: Demonstrations | Any,
        n_steps: int = 10_000,
        batch_size: int = 256,
        critic_steps: int | None = None,
        add_to_replay_buffer: bool = False,
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
            Also store the demonstrations in the replay buffer.
        progress_bar : bool
        """
        demos = (
            demonstrations
            if isinstance(demonstrations, Demonstrations)
            else Demonstrations.from_minari(demonstrations, data_path)
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
        self.dual_solver.cost = self._dual_cost()
        gen = th.Generator(device="cpu").manual_seed(0 if self.seed is None else self.seed)
        critic_steps = n_steps // 2 if critic_steps is None else critic_steps
        policy.set_training_mode(True)
        for step in tqdm(range(max(n_steps, critic_steps)), disable=not progress_bar, desc="pretrain"):
            idx = th.randint(len(demos), (batch_size,), generator=gen).to(self.device)
            if step < n_steps:
                loss = policy.schedule.epsilon_loss(policy.actor, actions[idx], obs_n[idx])
                self._optimize(policy.actor.optimizer, loss)
                polyak_update(policy.actor.parameters(), policy.actor_ema.parameters(), 1.0 - self.actor_ema)
            if step < critic_steps:
                self._iql_update(obs_n[idx], actions[idx], rewards[idx], next_n[idx], dones[idx])
        if add_to_replay_buffer:
            self._add_demos_to_buffer(demos)
        return self

    def _demo_tensor(self, obs: Any) -> th.Tensor:
        if isinstance(obs, dict):
            obs = {k: th.as_tensor(np.asarray(v), device=self.device) for k, v in obs.items()}
        else:
            obs = th.as_tensor(np.asarray(obs), device=self.device)
        return self.policy.flatten_obs(obs)

    def _add_demos_to_buffer(self, demos: Demonstrations) -> None:
        assert self.replay_buffer is not None
        n_envs = self.n_envs
        scaled = self.policy.scale_action(demos.actions)
        for start in range(0, len(demos) - n_envs + 1, n_envs):
            sl = slice(start, start + n_envs)

            def take(o: Any, sl: slice = sl) -> Any:
                return {k: np.asarray(v[sl]) for k, v in o.items()} if isinstance(o, dict) else np.asarray(o[sl])

            infos = [{"TimeLimit.truncated": bool(t)} for t in demos.truncations[sl]]
            self.replay_buffer.add(
                take(demos.observations),
                take(demos.next_observations),
                scaled[sl],
                demos.rewards[sl],
                demos.terminations[sl].astype(np.float32),
                infos,
            )

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
        # One forward pass for V(s) and V(s'); as in IQL, both losses use the networks before this step.
        v, v_next = policy.value(th.cat([obs, next_obs])).split(obs.shape[0])
        diff = q_target - v
        weight = th.where(diff < 0, 1.0 - policy.expectile, policy.expectile)
        value_loss = (weight * diff.square()).mean()
        self._optimize(policy.value.optimizer, value_loss)
        with th.no_grad():
            target = rew + (1.0 - done) * self.gamma * v_next.detach()
        q1, q2 = policy.critic(obs, act)
        critic_loss = 0.5 * ((q1 - target).square().mean() + (q2 - target).square().mean())
        self._optimize(policy.critic.optimizer, critic_loss)
        polyak_update(policy.critic.parameters(), policy.critic_target.parameters(), self.tau)
        return float(critic_loss.detach()), float(value_loss.detach())

    def _replay_sampler(self, kind: str) -> Any:
        """Return a sampler of normalised states or scaled actions from the replay buffer (for the dual)."""
        assert self.replay_buffer is not None
        buf = self.replay_buffer
        policy = self.policy

        def sample(n: int, gen: th.Generator) -> th.Tensor:
            upper = buf.buffer_size if buf.full else buf.pos
            idx = th.randint(upper, (n,), generator=gen).numpy()
            env_idx = th.randint(buf.n_envs, (n,), generator=gen).numpy()
            if kind == "actions":
                return th.as_tensor(buf.actions[idx, env_idx], device=self.device).float()
            obs: th.Tensor | dict[str, th.Tensor]
            if isinstance(buf, DictReplayBuffer):
                obs = {k: th.as_tensor(v[idx, env_idx], device=self.device) for k, v in buf.observations.items()}
            else:
                obs = th.as_tensor(buf.observations[idx, env_idx], device=self.device)
            return policy.prepare_obs(obs)

        return sample

    def _dual_update(self) -> dict[str, float]:
        policy = self.policy
        self._sync_dual_cost()
        kwargs: dict[str, Any] = {}
        if self.use_mask:
            if len(self.expert_actions) == 0:
                raise RuntimeError("OTPR with use_mask=True needs expert keypoints: call `pretrain(demonstrations)` first")
            pick = th.randint(len(self.expert_actions), (self.n_keypoints,), generator=self.dual_solver._generator)
            kwargs = dict(
                keypoints=(self.expert_obs[pick.to(self.expert_obs.device)], self.expert_actions[pick.to(self.device)]),
                keypoint_mass=self.n_keypoints / (self.n_keypoints + self.dual_batch_size),
            )
        evaluate = self.dual_updates % _DUAL_EVAL_EVERY == 0  # a marginal-error estimate costs a batch of Q pairs
        result = self.dual_solver.fit(
            self._replay_sampler("obs"),
            self._replay_sampler("actions"),
            max_steps=self.dual_steps,
            evaluate=evaluate,
            **kwargs,
        )
        self.dual_updates += 1
        if self.dual_updates >= self.dual_start:
            policy.dual_ready.fill_(True)
        stats = {"dual_objective": result.history["objective"][-1]}
        if evaluate:
            stats["marginal_error"] = result.marginal_error
        return stats

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """IQL critic, dual potentials and H-weighted actor updates on replay minibatches (Algorithm 1)."""
        policy = self.policy
        policy.set_training_mode(True)
        assert self.replay_buffer is not None
        logs: dict[str, list[float]] = {}
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            obs, next_obs = policy.prepare_obs(data.observations), policy.prepare_obs(data.next_observations)
            rewards = data.rewards.reshape(-1)
            if not (bool(th.isfinite(obs).all()) and bool(th.isfinite(rewards).all())):
                raise ValueError("NaN or infinite values in replay observations or rewards")
            critic_loss, value_loss = self._iql_update(obs, data.actions, rewards, next_obs, data.dones.reshape(-1))
            with th.no_grad():
                q_abs = policy.critic.min(obs, data.actions).abs().mean().clamp_min(1e-3)
                if self._n_updates > 0:  # EMA of mean |Q|: the cost -Q / scale keeps a stable unit
                    policy.cost_scale.mul_(0.99).add_(0.01 * q_abs)
                else:
                    policy.cost_scale.copy_(q_abs)
            stats = {"critic_loss": critic_loss, "value_loss": value_loss}
            if policy.guidance == "compatibility" and self._n_updates % self.dual_freq == 0:
                stats.update(self._dual_update())
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

    def _actor_update(self) -> dict[str, float]:
        policy = self.policy
        assert self.replay_buffer is not None
        data = self.replay_buffer.sample(self.actor_batch_size, env=self._vec_normalize_env)
        obs = policy.prepare_obs(data.observations)
        _, weights = policy.candidate_scores(obs, data.actions)
        loss = policy.schedule.epsilon_loss(policy.actor, data.actions, obs, weights)
        if float(weights.sum()) > 0:
            self._optimize(policy.actor.optimizer, loss)
            polyak_update(policy.actor.parameters(), policy.actor_ema.parameters(), 1.0 - self.actor_ema)
        p = weights / weights.sum().clamp_min(1e-12)
        entropy = float(-(th.xlogy(p, p)).sum())
        return {
            "actor_loss": float(loss.detach()),
            "h_nonzero_frac": float((weights > 0).float().mean()),
            "h_entropy": entropy,
        }

    # ---- SB3 hooks --------------------------------------------------------------------------------------

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.random_warmup and self.num_timesteps < learning_starts:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        # The pretrained diffusion actor acts from the first step (no uniform warm-up).
        return super()._sample_action(0, action_noise, n_envs)

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
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer", "value.optimizer", "dual_solver.optimizer"]
        return state_dicts, ["expert_obs", "expert_actions"]
