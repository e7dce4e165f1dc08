"""Save/load round trips, in the shape of SB3's test_save_load.py."""

import numpy as np
import torch as th
from otpr_helpers import FAST, IdentityEnvBox, PointGoalEnv, identity_demos, point_goal_demos

from otpr_sb3 import OTPR
from otpr_sb3.arguments import ACTOR_KWARGS


def _trained(env, policy="MlpPolicy", demos=None, steps=60):
    model = OTPR(policy, env, seed=0, **FAST)
    model.pretrain(demos if demos is not None else identity_demos(), n_steps=20)
    model.learn(steps)
    return model


def test_save_load_restores_everything(tmp_path):
    env = IdentityEnvBox(ep_length=20)
    model = _trained(env)
    obs = np.linspace(-1, 1, 11, dtype=np.float32)[:, None]
    before, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "otpr.zip")
    loaded = OTPR.load(tmp_path / "otpr.zip", env=env)
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_allclose(before, after, atol=1e-4)
    # Every module of the policy: actor, EMA actor, critics, targets, V, potentials, normalisation buffers.
    for (name, p), (_, q) in zip(model.policy.state_dict().items(), loaded.policy.state_dict().items()):
        assert th.equal(p, q), name
    for attr in ("actor", "critic", "value"):
        sa = getattr(model, attr).optimizer.state_dict()["state"]
        sb = getattr(loaded, attr).optimizer.state_dict()["state"]
        for k in sa:
            assert th.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]), attr
    da = model.policy.guidance.trainer.solver.optimizer.state_dict()["state"]
    db = loaded.policy.guidance.trainer.solver.optimizer.state_dict()["state"]
    assert da and all(th.equal(da[k]["exp_avg"], db[k]["exp_avg"]) for k in da)
    assert th.equal(model.expert_obs, loaded.expert_obs) and th.equal(model.expert_actions, loaded.expert_actions)
    assert bool(loaded.policy.guidance.ready) == bool(model.policy.guidance.ready)
    loaded.learn(20)  # training continues after loading


def test_loaded_model_continues_the_reference_and_held_out_streams(tmp_path):
    """The reference actions of u(s) and the held-out diagnostics draw on from where the saved run stopped."""
    env = IdentityEnvBox(ep_length=20)
    model = _trained(env, steps=60)
    model.save(tmp_path / "otpr.zip")
    loaded = OTPR.load(tmp_path / "otpr.zip", env=env)
    for name in ("_reference_generator", "_eval_generator"):
        assert th.equal(getattr(model, name).get_state(), getattr(loaded, name).get_state()), name
        a = th.randn(5, generator=getattr(model, name))
        b = th.randn(5, generator=getattr(loaded, name))
        assert th.equal(a, b), name
    fresh = OTPR("MlpPolicy", env, seed=0, **FAST)  # a new model starts both streams from the seed
    assert not th.equal(fresh._reference_generator.get_state(), model._reference_generator.get_state())


def test_save_load_dict_observations(tmp_path):
    env = PointGoalEnv()
    model = _trained(env, "MultiInputPolicy", point_goal_demos(3), steps=40)
    obs, _ = env.reset(seed=3)
    before, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "m")
    after, _ = OTPR.load(tmp_path / "m", env=env).predict(obs, deterministic=True)
    np.testing.assert_allclose(before, after, atol=1e-4)


def test_replay_buffer_round_trip(tmp_path):
    env = IdentityEnvBox(ep_length=20)
    model = _trained(env, steps=40)
    model.save_replay_buffer(tmp_path / "buffer")
    other = OTPR("MlpPolicy", env, seed=1, **FAST)
    other.load_replay_buffer(tmp_path / "buffer")
    a, b = model.replay_buffer, other.replay_buffer
    assert a.pos == b.pos and a.full == b.full
    for field in ("observations", "actions", "rewards", "next_observations", "dones"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_load_overrides_the_dual_settings_everywhere(tmp_path):
    """`OTPR.load(..., reg=..)` (SB3's override) reaches the policy's H and the dual, not only the attribute."""
    env = IdentityEnvBox(ep_length=20)
    model = _trained(env)
    model.save(tmp_path / "otpr.zip")
    dual_kwargs = {**model.dual_kwargs, "learning_rate": 5e-4}
    loaded = OTPR.load(tmp_path / "otpr.zip", env=env, reg=0.2, relation_weight=0.3, dual_kwargs=dual_kwargs)
    assert loaded.reg == loaded.policy.guidance.reg == 0.2 and loaded.policy.guidance.trainer.solver.reg == 0.2
    assert loaded.relation_weight == loaded.policy.guidance.relation_weight == 0.3
    assert all(g["lr"] == 5e-4 for g in loaded.policy.guidance.trainer.solver.optimizer.param_groups)
    plain = OTPR.load(tmp_path / "otpr.zip", env=env)  # without overrides: the saved values
    assert plain.policy.guidance.reg == model.reg and plain.policy.guidance.relation_weight == 0.1
    loaded.learn(20)  # the overridden model still trains


def test_a_model_saved_before_a_dual_setting_existed_loads_with_its_default(tmp_path):
    """A zip whose dual_kwargs and actor_kwargs lack a key added later loads, and those keys take their defaults."""
    import json
    import zipfile

    env = IdentityEnvBox(ep_length=20)
    model = _trained(env, steps=30)
    model.save(tmp_path / "new.zip")
    with zipfile.ZipFile(tmp_path / "new.zip") as src, zipfile.ZipFile(tmp_path / "old.zip", "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                assert "unbalanced" in data["dual_kwargs"]
                del data["dual_kwargs"]["unbalanced"]
                assert data["actor_kwargs"]["reference_actions"] == 8
                del data["actor_kwargs"]["reference_actions"]
                content = json.dumps(data).encode()
            dst.writestr(item, content)
    loaded = OTPR.load(tmp_path / "old.zip", env=env)
    assert loaded.dual_kwargs["unbalanced"] is None
    assert loaded.policy.guidance.trainer.unbalanced is None
    assert loaded.actor_kwargs["reference_actions"] == ACTOR_KWARGS["reference_actions"]
    loaded.learn(10)  # the actor's update reads the completed actor_kwargs
    obs = np.linspace(-1, 1, 5, dtype=np.float32)[:, None]
    np.testing.assert_allclose(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0], atol=1e-4
    )
