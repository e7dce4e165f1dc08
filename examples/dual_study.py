"""How well OTPR's dual solves its OT problem during fine-tuning, per dual setting, on a Fetch task.

Every setting starts from the same pretrained policy (same seed, same demonstrations, same pretraining) and
fine-tunes for the same number of env steps. Every ``--eval-every`` dual updates the held-out diagnostics of
:meth:`otpr_sb3.OTPR.dual_diagnostics` are recorded (relative marginal error of the potentials' plan and gap
to the exact minibatch optimum, on ``--heldout`` fresh replay states and actions); the report gives their
median after ``dual_start``, the collection fallback rate, the wall-clock per env step (diagnostics
excluded) and the success rate before and after (deterministic, ``--eval-episodes`` episodes).

Run::

    python examples/dual_study.py run --settings defaults exact256     # results in outputs/dual_study/
    python examples/dual_study.py report                               # table (rst) of every finished setting
    python examples/dual_study.py refit --snapshot outputs/dual_study/defaults   # dual alone, frozen critic
    python examples/dual_study.py sides --snapshot outputs/dual_study/defaults   # state vs action marginal errors

A setting that finished is skipped on the next ``run``, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import torch as th
from train_fetch import success_rate

from neural_ot import MLPPotential, c_transform, plan, relative_marginal_errors
from otpr_sb3 import OTPR, Demonstrations, add_demonstrations
from otpr_sb3.benchmark.recording import record

gym.register_envs(gymnasium_robotics)

# OTPR keyword arguments of each setting (policy_kwargs under "policy").
SETTINGS: dict[str, dict[str, Any]] = {
    "v1-dual": dict(dual_method="gradient", dual_batch_size=48, dual_steps=1, dual_learning_rate=1e-3),
    "exact256": dict(dual_method="exact", dual_batch_size=256, dual_steps=1, dual_learning_rate=1e-3),
    "exact128": dict(dual_method="exact", dual_batch_size=128, dual_steps=1, dual_learning_rate=1e-3),
    "gradient256x4": dict(dual_method="gradient", dual_batch_size=256, dual_steps=4, dual_learning_rate=1e-3),
    "exact256-reg0.2": dict(dual_method="exact", dual_batch_size=256, dual_steps=1, reg=0.2),
    "exact256-reg0.5": dict(dual_method="exact", dual_batch_size=256, dual_steps=1, reg=0.5),
    "exact256-rel0.3": dict(dual_method="exact", dual_batch_size=256, dual_steps=1, relation_weight=0.3),
    "exact256-rel0.1": dict(dual_method="exact", dual_batch_size=256, dual_steps=1, relation_weight=0.1),
    "exact256-nomask": dict(dual_method="exact", dual_batch_size=256, dual_steps=1, use_mask=False),
    "gradient48x8": dict(dual_method="gradient", dual_batch_size=48, dual_steps_per_batch=8),
    "gradient128x8": dict(dual_method="gradient", dual_batch_size=128, dual_steps_per_batch=8),
    "exact64x8": dict(dual_method="exact", dual_batch_size=64, dual_steps_per_batch=8),
    "exact128x8": dict(dual_method="exact", dual_batch_size=128, dual_steps_per_batch=8),
    "exact128x8-reg0.2": dict(dual_method="exact", dual_batch_size=128, dual_steps_per_batch=8, reg=0.2),
    "exact128x16": dict(dual_method="exact", dual_batch_size=128, dual_steps_per_batch=16),
    "exact128x16-reg0.2": dict(dual_method="exact", dual_batch_size=128, dual_steps_per_batch=16, reg=0.2),
    "gradient128x16": dict(dual_method="gradient", dual_batch_size=128, dual_steps_per_batch=16),
    "exact128x16-f16": dict(dual_method="exact", dual_batch_size=128, dual_steps_per_batch=16, dual_freq=16, dual_start=125),
    "exact128x16-f16-reg0.1": dict(
        dual_method="exact", dual_batch_size=128, dual_steps_per_batch=16, dual_freq=16, dual_start=125, reg=0.1
    ),
    "v1-dual-reg0.2": dict(dual_method="gradient", dual_batch_size=48, dual_steps=1, reg=0.2),
    "v1-dual-reg0.5": dict(dual_method="gradient", dual_batch_size=48, dual_steps=1, reg=0.5),
    "gradient128x16-reg0.2": dict(dual_method="gradient", dual_batch_size=128, dual_steps_per_batch=16, reg=0.2),
    "reg0.5": dict(reg=0.5),
    "reg0.5-candidates": dict(reg=0.5, actor_targets="candidates"),
    # The ablations' temperatures, on the same budget (guidance "advantage": exp(T (Q - V) / spread)).
    "advantage-T1": dict(policy=dict(guidance="advantage", temperature=1.0)),
    "advantage-T3": dict(policy=dict(guidance="advantage", temperature=3.0)),
    "advantage-T10": dict(policy=dict(guidance="advantage", temperature=10.0)),
    "defaults": dict(reg=0.05, relation_weight=0.0),  # the defaults before this study (same as v1-dual)
    # The second defaults (gradient dual, learned u; run as "new-defaults" when they were the defaults).
    "v2-dual": dict(dual_method="gradient", reference_actions=0),
    "new-defaults": dict(),  # whatever the defaults are now (today: the same as semi-dual-ref48-actor8)
    # Semi-dual: v ascends the semi-dual, u regresses onto the minibatch c-transform of v.
    "semi-dual": dict(dual_method="semi-dual", reference_actions=0),
    # u(s) as the c-transform of v over M replay actions wherever H is evaluated.
    # (the first two with the actor's weights from all M references: ran before actor_reference_actions existed)
    "semi-dual-ref16": dict(dual_method="semi-dual", reference_actions=16, actor_reference_actions=16),
    "semi-dual-ref48": dict(dual_method="semi-dual", reference_actions=48, actor_reference_actions=48),
    "semi-dual-ref48-actor8": dict(dual_method="semi-dual", reference_actions=48, actor_reference_actions=8),
    "semi-dual-ref48-actor8-reg0.2": dict(dual_method="semi-dual", reference_actions=48, actor_reference_actions=8, reg=0.2),
    "semi-dual-ref48-actor8-reg0.1": dict(dual_method="semi-dual", reference_actions=48, actor_reference_actions=8, reg=0.1),
    "gradient-ref48-actor8": dict(dual_method="gradient", reference_actions=48, actor_reference_actions=8),
    "q-T1": dict(policy=dict(guidance="q", temperature=1.0)),
    "q-T0.3": dict(policy=dict(guidance="q", temperature=0.3)),
}


#: The settings above name the keys of OTPR's ``dual_kwargs`` and ``actor_kwargs`` as OTPR spelled them when the
#: study ran (one flat list of arguments); ``otpr_kwargs`` puts them where they are now.
_DUAL_KEYS = {
    "dual_method": "method",
    "dual_batch_size": "batch_size",
    "dual_steps": "steps",
    "dual_steps_per_batch": "steps_per_batch",
    "dual_learning_rate": "learning_rate",
    "reference_actions": "reference_actions",
    "dual_eval_freq": "eval_freq",
    "dual_eval_batch_size": "eval_batch_size",
}


def otpr_kwargs(setting: dict[str, Any]) -> dict[str, Any]:
    """OTPR keyword arguments of a study setting (see ``_DUAL_KEYS``)."""
    kwargs: dict[str, Any] = {"dual_kwargs": {}, "actor_kwargs": {}}
    for key, value in setting.items():
        if key in _DUAL_KEYS:
            kwargs["dual_kwargs"][_DUAL_KEYS[key]] = value
        elif key == "actor_reference_actions":
            kwargs["actor_kwargs"]["reference_actions"] = value
        elif key == "policy":
            guidance_kwargs = {k: v for k, v in value.items() if k == "temperature"}
            kwargs["policy_kwargs"] = {
                **{k: v for k, v in value.items() if k != "temperature"},
                "guidance_kwargs": guidance_kwargs,
            }
        else:
            kwargs[key] = value
    return kwargs


def _model(env_id: str, seed: int, setting: dict[str, Any], dual_eval_freq: int, heldout: int) -> OTPR:
    kwargs = otpr_kwargs({**setting, "dual_eval_freq": dual_eval_freq, "dual_eval_batch_size": heldout})
    return OTPR("MultiInputPolicy", gym.make(env_id), seed=seed, **kwargs)


def pretrained(model: OTPR, demos: Demonstrations, args: argparse.Namespace) -> None:
    """Pretrain ``model``, or load the pretraining every setting shares (it does not depend on the dual)."""
    cache = os.path.join(args.out, f"pretrained-{args.demos}-{args.pretrain_steps}-s{args.seed}.pt")
    parts = ("actor", "critic", "value")
    if not os.path.exists(cache):
        model.pretrain(demos, n_steps=args.pretrain_steps, add_to_replay_buffer=True, progress_bar=True)
        state = {f"{k}.optimizer": getattr(model.policy, k).optimizer.state_dict() for k in parts}
        state.update(policy=model.policy.state_dict(), expert_obs=model.expert_obs, expert_actions=model.expert_actions)
        th.save(state, cache + ".tmp")
        os.replace(cache + ".tmp", cache)
        return
    state = th.load(cache, weights_only=False)
    # set_parameters keeps this setting's reg and relation weight (guidance settings, not state), and restores the scales.
    model.set_parameters({k: state[k] for k in ("policy", *(f"{p}.optimizer" for p in parts))}, exact_match=False)
    model.expert_obs, model.expert_actions = state["expert_obs"], state["expert_actions"]
    model.mark_pretrained()
    add_demonstrations(model.replay_buffer, demos, model.action_space)  # type: ignore[arg-type]


def run_setting(name: str, args: argparse.Namespace, demos: Demonstrations, path: str) -> None:
    th.manual_seed(args.seed)
    model = _model(args.env, args.seed, SETTINGS[name], args.eval_every, args.heldout)
    pretrained(model, demos, args)
    before = success_rate(model, args.env, args.eval_episodes)
    records: list[dict[str, float]] = []
    diag_time = [0.0]
    original = model.dual_diagnostics

    def recorded(batch_size: int | None = None) -> dict[str, float]:
        t = time.perf_counter()
        out = original(batch_size)
        diag_time[0] += time.perf_counter() - t
        records.append({"dual_updates": model.dual_updates, "timesteps": model.num_timesteps, **out})
        print(f"{name} step {model.num_timesteps}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
        return out

    model.dual_diagnostics = recorded  # type: ignore[method-assign]
    counts = {"states": 0, "fallback": 0}
    dump = model.dump_logs

    def counting_dump() -> None:
        for key in counts:
            counts[key] += model.policy.selection_counts[key]
        dump()

    model.dump_logs = counting_dump  # type: ignore[method-assign]
    t0 = time.perf_counter()
    model.learn(args.timesteps, log_interval=1)
    wall = time.perf_counter() - t0 - diag_time[0]
    for key in counts:  # states since the last dump
        counts[key] += model.policy.selection_counts[key]
    after = success_rate(model, args.env, args.eval_episodes)
    del model.dual_diagnostics, model.dump_logs  # the wrappers above must not be saved with the model
    # The snapshot that examples/what_h_does.py reads: model and replay buffer.
    model.save(path[: -len(".json")] + "-model")
    model.save_replay_buffer(path[: -len(".json")] + "-replay")
    ready = [r for r in records if r["dual_updates"] >= model.dual_start]
    result = {
        "setting": name,
        "kwargs": SETTINGS[name],
        "reg": float(model.reg),
        "relation_weight": float(model.relation_weight),
        "success_before": before,
        "success_after": after,
        "eval_episodes": args.eval_episodes,
        "timesteps": args.timesteps,
        "s_per_env_step": wall / args.timesteps,
        "median_marginal_error": float(np.median([r["marginal_error"] for r in ready])) if ready else None,
        "median_dual_gap": float(np.median([r["dual_gap"] for r in ready])) if ready else None,
        "median_h_nonzero": float(np.median([r["h_nonzero_frac_heldout"] for r in ready])) if ready else None,
        "fallback_frac": counts["fallback"] / max(counts["states"], 1),
        "records": records,
        "args": vars(args),
    }
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)
    print(
        f"{name}: success {before:.2f} -> {after:.2f}; median marginal error {result['median_marginal_error']}, "
        f"gap {result['median_dual_gap']}; {1000 * result['s_per_env_step']:.1f} ms/env step"
    )


def load_snapshot(snapshot: str, env: gym.Env, **kwargs: Any) -> OTPR:
    """A snapshot's model and replay buffer, with a fresh dual solver for ``kwargs`` (the run's potentials)."""
    model = OTPR.load(snapshot + "-model.zip", env=env, **otpr_kwargs({"dual_eval_freq": 0, **kwargs}))
    model.load_replay_buffer(snapshot + "-replay.pkl")
    for attr in ("dual_diagnostics", "dump_logs"):  # snapshots saved before `run_setting` removed its wrappers
        model.__dict__.pop(attr, None)
    model.policy.guidance.trainer = None  # a fresh optimiser for this setting; the potentials stay the run's
    model.policy.guidance.setup_training(**model._training_settings())
    return model


def refit(args: argparse.Namespace) -> None:
    """Each setting's dual alone on the frozen critic of a snapshot, warm-started from the run's potentials."""
    env = gym.make(args.env)
    for name in args.settings:
        model = load_snapshot(args.snapshot, env, **{k: v for k, v in SETTINGS[name].items() if k != "policy"})  # flat names
        line, spent, k, marks = [], 0.0, 0, [0.0, args.refit / 10, args.refit / 3, args.refit]
        while marks:
            if spent >= marks[0]:
                marks.pop(0)
                d = [model.dual_diagnostics(args.heldout) for _ in range(3)]
                err, gap = (float(np.mean([x[key] for x in d])) for key in ("marginal_error", "dual_gap"))
                line.append(f"{spent:4.0f}s ({k}): {err:.2f}/{gap:.2f}")
                continue
            t = time.perf_counter()
            model._guidance_update()
            spent += time.perf_counter() - t
            k += 1
        ms = 1000 * spent / max(k, 1)
        print(f"{name:>18}: {ms:6.1f} ms/update | seconds (updates): marginal error/gap " + " | ".join(line), flush=True)


def sides(args: argparse.Namespace) -> None:
    """State- and action-side marginal errors on held-out batches after ``--updates`` more dual updates per reg."""
    env = gym.make(args.env)
    for reg in args.regs:
        model = load_snapshot(args.snapshot, env, reg=reg)
        policy = model.policy
        for _ in range(args.updates):
            model._guidance_update()
        for seed in range(3):
            batch = model.policy.guidance.trainer.solver.sample_batch(args.heldout, th.Generator().manual_seed(seed))
            C = policy.guidance.dual_cost.matrix(batch.x, batch.y)
            u, v = model.policy.guidance.trainer.solver.potentials_on(batch, potentials=(policy.guidance.u, policy.guidance.v))
            K = batch.n_keypoints
            learned = plan(u, v, C, reg, batch.wx, batch.wy, mask=batch.mask)
            semi = u.clone()
            semi[K:] = c_transform(v[K:], C[K:, K:], reg, b=batch.wy[K:])  # regular rows see regular columns only
            semi_plan = plan(semi, v, C, reg, batch.wx, batch.wy, mask=batch.mask)
            e_learned = relative_marginal_errors(learned.sum(1), learned.sum(0), batch.wx, batch.wy)
            e_semi = relative_marginal_errors(semi_plan.sum(1), semi_plan.sum(0), batch.wx, batch.wy)
            # The cost is scaled by the spread of Q - V on replay pairs; over all pairs it is wider.
            data = model.replay_buffer.sample(args.heldout)  # matched (state, action) pairs
            paired = policy.guidance.pair_cost(policy.prepare_obs(data.observations), data.actions)
            print(
                f"reg {reg}: cost std over all pairs {float(C[K:, K:].std()):.2f}, over replay pairs "
                f"{float(paired.std()):.2f} | H > 0 on {float((learned > 0).float().mean()):.2f} of pairs | learned u: states "
                f"{e_learned[0]:.3f}, actions {e_learned[1]:.3f} | u = c-transform of v: states {e_semi[0]:.3f}, "
                f"actions {e_semi[1]:.3f}",
                flush=True,
            )


def ctransform(args: argparse.Namespace) -> None:
    """Why the learned ``u`` misses, and what computing it as a c-transform over reference actions gives instead.

    On a snapshot: (1) the learned ``u`` and the c-transform of ``v`` over random 48- and 128-action subsets,
    against the c-transform over ``--actions`` held-out actions (root-mean-square and mean difference, in units of
    ``reg``); (2) a fresh MLP of the potentials' size regressed onto that c-transform on 2,560 states and tested on
    512 others (can the function be learned from clean targets?); (3) held-out marginal errors of the plan when
    ``u`` is the learned network or the c-transform of ``v`` over ``M`` other replay actions.
    """
    env = gym.make(args.env)
    model = load_snapshot(args.snapshot, env)
    model.policy.guidance.trainer.setup(model._update_context())
    policy, reg = model.policy, model.policy.guidance.reg
    gen = th.Generator().manual_seed(0)
    with th.no_grad():
        states = model._sampler.states(3072, gen)
        actions = model._sampler.actions(args.actions, gen)
        C = th.cat([policy.guidance.dual_cost.matrix(states[i : i + 256], actions) for i in range(0, 3072, 256)])
        v = policy.guidance.v(actions)
        ref = c_transform(v, C, reg)
        print(f"reg {reg}: c-transform over {args.actions} actions, std over states {float(ref.std()):.3f}", flush=True)
        subsets = {m: [th.randperm(args.actions, generator=gen)[:m] for _ in range(8)] for m in (48, 128)}
        rows = [("learned u", policy.guidance.u(states))] + [
            (f"c-transform over {m} actions (mean of 8)", th.stack([c_transform(v[i], C[:, i], reg) for i in idx]).mean(0))
            for m, idx in subsets.items()
        ]
    for name, u in rows:
        d = u - ref
        print(f"  {name:>40}: rms {float(d.square().mean().sqrt()) / reg:.3f} reg, mean {float(d.mean()) / reg:+.3f} reg")
    train, test = slice(0, 2560), slice(2560, 3072)
    for feats in ("s", "s and V(s)"):
        with th.no_grad():
            X = states if feats == "s" else th.cat([states, (policy.value(states) / policy.scales.adv_spread)[:, None]], 1)
        th.manual_seed(0)
        net = MLPPotential(X.shape[1], policy.guidance.potential_hidden)
        opt = th.optim.Adam(net.parameters(), 1e-3)
        for _ in range(3000):
            idx = th.randint(0, 2560, (48,), generator=gen)
            loss = (net(X[idx]) - ref[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with th.no_grad():
            fit = [float((net(X[sl]) - ref[sl]).square().mean().sqrt()) for sl in (train, test)]
        print(f"  fresh MLP on {feats}, 3000 steps of 48: rms train {fit[0]:.3f}, test {fit[1]:.3f} (cost units)", flush=True)
    for seed in range(3):
        batch = model.policy.guidance.trainer.solver.sample_batch(args.heldout, th.Generator().manual_seed(seed))
        K = batch.n_keypoints
        with th.no_grad():
            Cb = policy.guidance.dual_cost.matrix(batch.x, batch.y)
            u, vb = model.policy.guidance.trainer.solver.potentials_on(
                batch, potentials=(policy.guidance.u, policy.guidance.v)
            )
        line = []
        for M in (0, 16, 48, 128):
            uu = u.clone()
            if M:
                with th.no_grad():
                    ra = model._sampler.actions(M, th.Generator().manual_seed(100 + seed))
                    b = th.full((M,), float(batch.wy[K:].sum()) / M)
                    uu[K:] = c_transform(policy.guidance.v(ra), policy.guidance.dual_cost.matrix(batch.x[K:], ra), reg, b=b)
            T = plan(uu, vb, Cb, reg, batch.wx, batch.wy, mask=batch.mask)
            e = relative_marginal_errors(T.sum(1), T.sum(0), batch.wx, batch.wy)
            line.append(f"{'learned u' if M == 0 else f'M={M}'}: states {e[0]:.3f} actions {e[1]:.3f}")
        print(f"  held-out batch {seed}: " + " | ".join(line), flush=True)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a (no dual)" if value is None else format(value, spec)


def report(out: str, settings: list[str]) -> str:
    rows = []
    for name in settings:
        path = os.path.join(out, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                rows.append(json.load(f))
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - setting",
        "     - held-out marginal error (median)",
        "     - dual gap (median)",
        "     - reg",
        "     - H > 0 (median share of pairs)",
        "     - collection fallback",
        "     - ms / env step",
        "     - success before -> after",
    ]
    for r in rows:
        lines += [
            f"   * - ``{r['setting']}``",
            f"     - {_fmt(r['median_marginal_error'], '.3f')}",
            f"     - {_fmt(r['median_dual_gap'], '.3f')}",
            f"     - {r['kwargs'].get('reg', r.get('reg', 0.05))}",
            f"     - {_fmt(r['median_h_nonzero'], '.2f')}",
            f"     - {r['fallback_frac']:.2f}",
            f"     - {1000 * r['s_per_env_step']:.1f}",
            f"     - {r['success_before']:.2f} -> {r['success_after']:.2f}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "report", "refit", "sides", "ctransform"])
    parser.add_argument("--actions", type=int, default=512, help="ctransform: held-out actions")
    parser.add_argument("--regs", type=float, nargs="+", default=[0.05, 0.2, 0.5], help="sides: reg values")
    parser.add_argument("--updates", type=int, default=600, help="sides: dual updates before measuring")
    parser.add_argument("--snapshot", default="outputs/dual_study/defaults", help="refit: model and replay prefix")
    parser.add_argument("--refit", type=float, default=60.0, help="refit: seconds of dual updates per setting")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--env", default="FetchPickAndPlace-v4")
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--pretrain-steps", type=int, default=5_000)
    parser.add_argument("--timesteps", type=int, default=6_000)
    parser.add_argument("--eval-every", type=int, default=50, help="dual updates between held-out diagnostics")
    parser.add_argument("--heldout", type=int, default=256, help="states and actions of the held-out minibatch")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/dual_study")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.command == "report":
        print(report(args.out, args.settings), end="")
        return
    th.set_num_threads(args.threads)
    if args.command == "refit":
        refit(args)
        return
    if args.command == "sides":
        sides(args)
        return
    if args.command == "ctransform":
        ctransform(args)
        return
    # One dataset directory per process: `record` rewrites its dataset, and studies may run side by side.
    data_path = os.path.abspath(os.path.join(args.out, f"minari-{os.getpid()}"))
    dataset_id = record(args.env, args.demos, args.noise, args.seed, data_path).dataset_id
    demos = Demonstrations.from_minari(dataset_id, data_path=data_path)
    for name in args.settings:
        path = os.path.join(args.out, f"{name}.json")
        if os.path.exists(path):
            print(f"{name}: done already ({path})")
            continue
        run_setting(name, args, demos, path)


if __name__ == "__main__":
    main()
