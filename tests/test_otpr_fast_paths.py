"""The fast paths of acting and training compute the same functions as the plain ones (up to float rounding)."""

import pytest
import torch as th
from otpr_helpers import FAST, IdentityEnvBox, fast, identity_demos, load_script

from otpr_sb3 import OTPR
from otpr_sb3.critics import TwinQCritic as TwinQ
from otpr_sb3.diffusion import VPSchedule
from otpr_sb3.networks import ResidualMLPDenoiser

TOL = dict(rtol=1e-5, atol=1e-5)


def test_pairwise_and_grouped_critics_equal_the_critic_on_concatenated_pairs():
    th.manual_seed(0)
    q = TwinQ(5, 3, hidden=(32, 32))
    obs, act = th.randn(7, 5), th.randn(4, 3)
    flat = q.min(obs.repeat_interleave(4, dim=0), act.repeat(7, 1)).reshape(7, 4)
    th.testing.assert_close(q.pairwise_min(obs, act), flat, **TOL)
    own = th.randn(7, 6, 3)
    grouped = q.min(obs.repeat_interleave(6, dim=0), own.reshape(42, 3)).reshape(7, 6)
    th.testing.assert_close(q.grouped_min(obs, own), grouped, **TOL)
    th.testing.assert_close(q._split_min(obs, own, (7, 6), concatenate=False), grouped, **TOL)  # the benchmarks' A/B
    with pytest.raises(ValueError, match="act"):
        q.grouped_min(obs, th.randn(6, 2, 3))


def test_conditioned_denoiser_and_ddim_equal_the_module_forward():
    th.manual_seed(0)
    model = ResidualMLPDenoiser(6, 2, hidden_dim=32, n_blocks=2, time_dim=8)
    obs, a = th.randn(5, 6), th.randn(5, 2)
    steps = [20, 11, 3]
    eps = model.conditioned(obs, steps)
    for i, k in enumerate(steps):
        th.testing.assert_close(eps(a, i), model(a, th.full((5,), k), obs), **TOL)
    sched = VPSchedule(20)
    noise = th.randn(5, 2)

    def plain(a_k, k, cond):  # the same network without the precomputing path
        return model(a_k, k, cond)

    th.testing.assert_close(sched.ddim_sample(model, obs, noise, 4), sched.ddim_sample(plain, obs, noise, 4), **TOL)


def _ready_model(**kwargs):
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **fast(**kwargs))
    model.pretrain(identity_demos(), n_steps=20)
    model.learn(80)
    assert bool(model.policy.guidance.ready)
    return model


@pytest.mark.parametrize("reference_actions", [12, 0])
def test_compatibility_of_grouped_actions_equals_state_potential_plus_pair_costs(reference_actions):
    policy = _ready_model(reference_actions=reference_actions, relation_weight=0.3).policy
    assert policy.guidance.uses_relation_cost
    obs = th.linspace(-1, 1, 6)[:, None]
    acts = th.rand(6, 5, 1) * 2 - 1
    z, H = policy.guidance.grouped_scores(policy, obs, acts)
    u = policy.guidance.state_potential(obs)
    flat = acts.reshape(30, 1)
    rep = obs.repeat_interleave(5, dim=0)
    expected = (u.repeat_interleave(5) + policy.guidance.v(flat) - policy.guidance.pair_cost(rep, flat)).reshape(6, 5)
    th.testing.assert_close(z, expected, **TOL)
    th.testing.assert_close(H, th.relu(expected) / (2 * policy.guidance.reg), **TOL)
    # and the aligned scores the actor's weights use
    z1, _ = policy.candidate_scores(obs, acts[:, 0])
    th.testing.assert_close(z1, expected[:, 0], **TOL)
    with pytest.raises(ValueError, match="actions"):
        policy.guidance.grouped_scores(policy, obs, acts[:, 0])


def test_adam_is_fused_by_default_and_configurable():
    model = OTPR("MlpPolicy", IdentityEnvBox(), seed=0, **FAST)
    for opt in (model.policy.actor.optimizer, model.policy.critic.optimizer, model.policy.value.optimizer):
        assert opt.param_groups[0]["fused"] is True
    assert model.policy.guidance.trainer.solver.optimizer.param_groups[0]["fused"] is True
    kwargs = {**FAST, "policy_kwargs": {**FAST["policy_kwargs"], "optimizer_kwargs": dict(foreach=False)}}
    plain = OTPR("MlpPolicy", IdentityEnvBox(), seed=0, **kwargs)
    assert not plain.policy.critic.optimizer.param_groups[0]["fused"]


def test_bfloat16_pairs_stay_close_to_float32_and_keep_the_plan():
    from neural_ot import solve_discrete

    th.manual_seed(0)
    q32 = TwinQ(12, 4, hidden=(256, 256, 256))
    q16 = TwinQ(12, 4, hidden=(256, 256, 256), pair_precision="bfloat16")
    q16.load_state_dict(q32.state_dict())
    obs, act = th.randn(64, 12) * 2, th.rand(64, 4) * 2 - 1
    with th.no_grad():
        c32, c16 = -q32.pairwise_min(obs, act), -q16.pairwise_min(obs, act)
        own = th.rand(64, 5, 4)
        g32, g16 = q32.grouped_min(obs, own), q16.grouped_min(obs, own)
    assert c16.dtype == g16.dtype == th.float32
    err, spread = (c16 - c32).abs(), float(c32.std())
    assert float(err.max()) > 0  # the bfloat16 path is really taken
    assert float(err.median()) < 1e-2 * spread and float(err.max()) < 5e-2 * spread
    assert float((g16 - g32).abs().max()) < 5e-2 * spread
    # The exact L2 plan, at a reg where about a quarter of the pairs are active, moves little (0.022 in total
    # variation for this untrained critic, whose within-state spread is a fifth of its overall spread; 0.0025
    # on a fine-tuned Fetch critic, docs/data/check_pair_precision-2026-12-02.txt).
    a = b = th.full((64,), 1 / 64, dtype=th.float64)
    p32 = solve_discrete(a, b, (c32 / spread).double(), 0.01).plan
    p16 = solve_discrete(a, b, (c16 / spread).double(), 0.01).plan
    assert 0.1 < float((p32 > 0).double().mean()) < 0.5
    assert float((p32 - p16).abs().sum() / 2) < 0.05


def _autocast_pairs(q, obs, act):
    """min(Q1, Q2) of ``obs`` with ``act`` ``(m, d)`` (all pairs) or ``(n, m, d)`` (each state's own), as autocast runs
    the bfloat16 layers: the reference of the fused fast path (the benchmark's, which measures against it)."""
    reference = load_script("examples/benchmarks/bench_otpr_speed.py").autocast_split_min
    act = act.unsqueeze(0) if act.ndim == 2 else act
    return reference(q, obs, act, (obs.shape[0], act.shape[1]))


def test_bfloat16_pairs_are_autocasts_numbers_with_the_relu_fused():
    # oneDNN's product with the ReLU fused rounds as the product and the ReLU apart: the same bits, not just close.
    th.manual_seed(1)
    q = TwinQ(12, 4, hidden=(256, 256, 256), pair_precision="bfloat16")
    obs, act = th.randn(48, 12) * 2, th.rand(40, 4) * 2 - 1
    with th.no_grad():
        reference = _autocast_pairs(q, obs, act)
        assert th.equal(q.pairwise_min(obs, act), reference)
        own = act[:35].reshape(5, 7, 4)
        assert th.equal(q.grouped_min(obs[:5], own), _autocast_pairs(q, obs[:5], own))
    # With gradients enabled (the fused product has none) the plain product and ReLU run: the same numbers.
    assert th.equal(q.pairwise_min(obs, act).detach(), reference)


def test_where_the_fused_product_cannot_run_the_plain_one_gives_its_numbers(monkeypatch):
    """oneDNN cannot fuse a bfloat16 product on a CPU without AVX-512 (it raised there, 2026-12-08): the probe says
    so, and the unfused product and ReLU run instead, with the fused path's numbers where both run (float32)."""
    from otpr_sb3 import critics

    th.manual_seed(2)
    q = TwinQ(12, 4, hidden=(64, 64, 64), pair_precision="float32")
    obs, act = th.randn(16, 12), th.rand(10, 4) * 2 - 1
    with th.no_grad():
        fused = q.pairwise_min(obs, act)
        monkeypatch.setattr(critics, "_fused_linear_relu_runs", lambda dtype: False)
        assert th.equal(q.pairwise_min(obs, act), fused)
    monkeypatch.undo()
    assert critics._fused_linear_relu_runs(th.float32)  # every CPU torch runs on
    if not th.cpu._is_avx512_supported():  # AVX2 alone: oneDNN has no bfloat16 product to fuse
        assert not critics._fused_linear_relu_runs(th.bfloat16)


def test_kept_bfloat16_weights_follow_every_change_of_the_critic():
    import copy

    th.manual_seed(2)
    q = TwinQ(12, 4, hidden=(64, 64, 64), pair_precision="bfloat16")
    q.optimizer = th.optim.Adam(q.parameters(), lr=1e-2, fused=True)  # in place, without bumping tensor versions
    q.keep_pair_weights(q.optimizer)
    obs, act = th.randn(30, 12), th.rand(20, 4) * 2 - 1

    def pairs(critic):
        with th.no_grad():
            return critic.pairwise_min(obs, act)

    before = pairs(q)
    assert th.equal(pairs(q), before) and th.equal(before, _autocast_pairs(q, obs, act))
    q.optimizer.zero_grad()
    q.min(obs, act[:1].expand(30, 4)).sum().backward()
    q.optimizer.step()
    after = pairs(q)
    assert not th.equal(after, before) and th.equal(after, _autocast_pairs(q, obs, act))
    other = TwinQ(12, 4, hidden=(64, 64, 64), pair_precision="bfloat16")
    q.load_state_dict(other.state_dict())
    assert th.equal(pairs(q), pairs(other))
    # A deep copy (the policy's target critic is one) keeps none: optimisers do not copy their step hooks.
    twin = copy.deepcopy(q)
    pairs(twin)
    twin.optimizer.zero_grad()
    twin.min(obs, act[:1].expand(30, 4)).sum().backward()
    twin.optimizer.step()
    assert th.equal(pairs(twin), _autocast_pairs(twin, obs, act)) and th.equal(pairs(q), pairs(other))


def test_pair_precision_resolution_and_validation(monkeypatch):
    from otpr_sb3 import critics

    cpu = th.device("cpu")
    assert critics.pair_dtype("float32", cpu) == th.float32
    assert critics.pair_dtype("bfloat16", cpu) == th.bfloat16
    monkeypatch.setattr(critics, "_cpu_has_bf16_matmul", lambda: True)
    assert critics.pair_dtype("auto", cpu) == th.bfloat16
    assert critics.pair_dtype("auto", th.device("cuda")) == th.float32
    monkeypatch.setattr(critics, "_cpu_has_bf16_matmul", lambda: False)
    assert critics.pair_dtype("auto", cpu) == th.float32
    # Either kind of bfloat16 matrix instruction counts, and neither means float32.
    monkeypatch.undo()
    for amx, avx512_bf16, expected in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(th.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(th.cpu, "_is_avx512_bf16_supported", lambda flag=avx512_bf16: flag)
        critics._cpu_has_bf16_matmul.cache_clear()
        assert critics._cpu_has_bf16_matmul() is expected
    critics._cpu_has_bf16_matmul.cache_clear()
    with pytest.raises(ValueError, match="pair_precision"):
        critics.pair_dtype("float16", cpu)
    with pytest.raises(ValueError, match="pair_precision"):
        OTPR("MlpPolicy", IdentityEnvBox(), policy_kwargs=dict(pair_precision="half"))


def test_pair_precision_reaches_the_critics_and_survives_save_load(tmp_path):
    kwargs = {**FAST, "policy_kwargs": {**FAST["policy_kwargs"], "pair_precision": "bfloat16"}}
    model = OTPR("MlpPolicy", IdentityEnvBox(), **kwargs)
    assert model.policy.critic.pair_precision == model.policy.critic_target.pair_precision == "bfloat16"
    model.save(tmp_path / "m.zip")
    loaded = OTPR.load(tmp_path / "m.zip")
    assert loaded.policy.critic.pair_precision == "bfloat16"
    assert OTPR("MlpPolicy", IdentityEnvBox(), **FAST).policy.critic.pair_precision == "auto"


def _modes(module):
    return {m.training for m in module.modules()}


def test_set_training_mode_sets_every_module_as_module_train_does():
    policy = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **fast()).policy
    policy.set_training_mode(False)
    assert _modes(policy) == {False}
    policy.set_training_mode(True)
    assert _modes(policy) == {True}
    # policy.eval() / train() are honoured: the next call walks again (a cached mode of its own would skip it)
    policy.eval()
    policy.set_training_mode(True)
    assert _modes(policy) == {True}
    policy.train()
    policy.set_training_mode(False)
    assert _modes(policy) == {False}
    with pytest.raises(ValueError, match="mode"):
        policy.set_training_mode(1)


def test_set_training_mode_calls_a_modules_own_train():
    class Recording(th.nn.Linear):
        calls: list[bool] = []

        def train(self, mode=True):
            Recording.calls.append(mode)
            return super().train(mode)

    policy = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **fast()).policy
    policy.extra = Recording(2, 2)
    policy.set_training_mode(False)
    assert Recording.calls == [False]
    assert _modes(policy) == {False}
