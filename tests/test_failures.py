"""Failed pick-and-place and push episodes are classified from their trajectories (synthetic Fetch observations)."""

import numpy as np
import pytest

from otpr_sb3.benchmark.failures import classify, held


def obs(grip, obj, fingers=0.04, goal=(1.3, 0.7, 0.6)):
    o = np.zeros(25)
    o[0:3], o[3:6], o[9], o[10] = grip, obj, fingers / 2, fingers / 2
    return {"observation": o, "achieved_goal": np.asarray(obj, float), "desired_goal": np.asarray(goal, float)}


TABLE = 0.42


def test_held_needs_the_object_between_closed_fingers():
    assert held(obs((1, 1, 0.5), (1, 1, 0.5), fingers=0.05)["observation"])
    assert not held(obs((1, 1, 0.5), (1, 1, 0.5), fingers=0.09)["observation"])  # open
    assert not held(obs((1, 1, 0.6), (1, 1, 0.5), fingers=0.05)["observation"])  # 10 cm away


def test_the_three_kinds():
    start = obs((1.2, 0.7, 0.6), (1.3, 0.75, TABLE))
    pushed = obs((1.3, 0.7, TABLE), (1.32, 0.78, TABLE + 0.005))  # moved, never lifted
    assert classify([start, pushed]) == "no grasp"
    lifted = obs((1.3, 0.75, 0.5), (1.3, 0.75, 0.5), fingers=0.05)
    on_floor = obs((1.3, 0.7, 0.55), (1.25, 0.8, TABLE), fingers=0.09)
    assert classify([start, lifted, on_floor]) == "dropped"
    carried = obs((1.2, 0.7, 0.6), (1.2, 0.7, 0.6), fingers=0.05)  # 10 cm from the goal, still held
    assert classify([start, lifted, carried]) == "held, not placed"


def test_a_success_or_a_stub_is_refused():
    start = obs((1.2, 0.7, 0.6), (1.3, 0.75, TABLE))
    at_goal = obs((1.3, 0.7, 0.6), (1.3, 0.71, 0.6))
    with pytest.raises(ValueError, match="did not fail"):
        classify([start, at_goal])
    with pytest.raises(ValueError, match="episode"):
        classify([start])


def test_the_kinds_of_no_grasp():
    from otpr_sb3.benchmark.failures import no_grasp_kind

    # Fetch reports closed fingers at reset: the reset observation never counts as a closing near the object.
    start = obs((1.3, 0.75, TABLE + 0.01), (1.3, 0.75, TABLE), fingers=0.0)
    stalled = obs((1.3, 0.8, TABLE + 0.03), (1.3, 0.75, TABLE), fingers=0.1)  # 5.8 cm away, open
    assert no_grasp_kind([start, stalled, stalled]) == "never reached"
    hovering = obs((1.3, 0.755, TABLE + 0.01), (1.3, 0.75, TABLE), fingers=0.1)  # 1.1 cm away, open
    assert no_grasp_kind([start, stalled, hovering, hovering]) == "reached, fingers open"
    closed_beside = obs((1.3, 0.775, TABLE + 0.01), (1.3, 0.75, TABLE), fingers=0.01)  # 2.7 cm: closed next to it
    assert no_grasp_kind([start, hovering, closed_beside]) == "closed, missed"
    assert no_grasp_kind([start, stalled, closed_beside]) == "never reached"  # closed, but never within 2 cm
    with pytest.raises(ValueError, match="episode"):
        no_grasp_kind([start])


def _push_episode(object_path, grip_path=None, goal=(1.4, 0.75, TABLE), steps=20):
    """A push episode whose object (and gripper) go along the given waypoints, linearly, in ``steps`` steps."""
    object_path = np.asarray(object_path, float)
    grip_path = np.asarray(grip_path if grip_path is not None else [p + np.array([-0.05, 0, 0]) for p in object_path])
    t = np.linspace(0, len(object_path) - 1, steps + 1)
    along = [np.array([np.interp(t, range(len(p)), p[:, k]) for k in range(3)]).T for p in (object_path, grip_path)]
    return [obs(g, o, goal=goal) for o, g in zip(*along)]


def test_the_push_kinds():
    from otpr_sb3.benchmark.failures import classify_push

    start = (1.2, 0.75, TABLE)
    assert classify_push(_push_episode([start, start])) == "never moved"
    assert classify_push(_push_episode([start, (1.205, 0.755, TABLE)])) == "never moved"  # 7 mm: not moved
    through = _push_episode([start, (1.4, 0.75, TABLE), (1.5, 0.75, TABLE)])  # crossed the goal, ended 10 cm past
    assert classify_push(through) == "passed the goal"
    # Pushed halfway, then the gripper and the object stop for the last 10 steps: a fixed point short of the goal
    halfway = (1.3, 0.75, TABLE)
    stalled = _push_episode([start, halfway], steps=10) + _push_episode([halfway, halfway], steps=10)[1:]
    assert classify_push(stalled) == "stalled"
    assert classify_push(_push_episode([start, halfway])) == "short of the goal"  # still moving at the end
    assert classify_push(_push_episode([start, (1.1, 0.7, TABLE)])) == "pushed away"
    # A gripper that still moves while the object rests: it left the object
    wiggling = stalled[:-5] + [obs((1.2 + 0.01 * k, 0.7, 0.5), halfway, goal=(1.4, 0.75, TABLE)) for k in range(5)]
    assert classify_push(wiggling) == "left the object"
    # Pushed away and then at rest: the direction comes first
    away = (1.1, 0.7, TABLE)
    assert classify_push(_push_episode([start, away], steps=10) + _push_episode([away, away], steps=10)[1:]) == "pushed away"
    with pytest.raises(ValueError, match="did not fail"):
        classify_push(_push_episode([start, (1.39, 0.75, TABLE)]))
    with pytest.raises(ValueError, match="episode"):
        classify_push(_push_episode([start, halfway], steps=5))


def test_failure_counts_name_their_task():
    from otpr_sb3.benchmark.failures import failure_counts

    with pytest.raises(ValueError, match="`task` must be 'pick_and_place' or 'push'"):
        failure_counts(None, None, 1, 0, task="stack")


def test_failure_counts_split_no_grasp_and_add_up():
    from otpr_sb3.benchmark.failures import CATEGORIES, NO_GRASP_KINDS, failure_counts

    class Env:  # the object sits still; the gripper moves to it and hovers with open fingers: every episode fails
        def reset(self, seed=None):
            self.t = 0
            return obs((1.2, 0.7, 0.6), (1.3, 0.75, TABLE), fingers=0.0), {}

        def step(self, action):
            self.t += 1
            return (
                obs((1.3, 0.75, TABLE + 0.01), (1.3, 0.75, TABLE), fingers=0.1),
                0.0,
                False,
                self.t == 5,
                {"is_success": 0.0},
            )

    class Model:
        def predict(self, observation, deterministic=True):
            return np.zeros(4), None

    counts = failure_counts(Model(), Env(), episodes=3, seed=0)
    assert counts["success"] == 0 and counts["no grasp"] == 3 and counts["reached, fingers open"] == 3
    assert sum(counts[k] for k in CATEGORIES) == 3 == sum(counts[k] for k in NO_GRASP_KINDS)


def test_the_baselines_failure_script_classifies_otpr_models_and_resumes(tmp_path, monkeypatch):
    """examples/benchmarks/baselines_failures.py on a runs directory: OTPR-class PickAndPlace runs are classified
    (counts add up to the episodes), other runs are listed and skipped, and a second pass adds nothing."""
    import json
    import sys

    import gymnasium as gym
    from otpr_helpers import SMALL, load_script

    from otpr_sb3 import OTPR

    module = load_script("examples/benchmarks/baselines_failures.py")
    env = gym.make("FetchPickAndPlace-v4")
    for method, task in (("otpr", "FetchPickAndPlace-v4"), ("otpr", "FetchPush-v4"), ("rlpd-her", "FetchPickAndPlace-v4")):
        run_dir = tmp_path / "runs" / task.split("-")[0] / method / "s0"
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text(json.dumps({"env_id": task, "method": method, "seed": 0}))
        (run_dir / "summary.json").write_text(json.dumps({"final_success": 0.0}))
        OTPR("MultiInputPolicy", env, policy_kwargs=SMALL, seed=0).save(run_dir / "model")
    out = tmp_path / "failures.json"
    argv = ["baselines_failures.py", "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--episodes", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    record = json.loads(out.read_text())
    assert [r["run"] for r in record["runs"]] == ["FetchPickAndPlace/otpr/s0"]
    assert sorted(record["other_runs"]) == ["FetchPickAndPlace/rlpd-her/s0", "FetchPush/otpr/s0"]
    run = record["runs"][0]
    kinds = ("no grasp", "dropped", "held, not placed")
    assert run["success"] * 2 + sum(run[k] for k in kinds) == 2 and run["final_success_of_run"] == 0.0
    module.main()  # resumes: nothing new
    assert json.loads(out.read_text()) == record
    table = module.failures_table(record)
    assert "   * - otpr" in table and "otpr-her" not in table
    # The Push run, into its own record, with the push kinds
    push_out = tmp_path / "failures_push.json"
    monkeypatch.setattr(sys, "argv", [*argv[:3], "--task", "FetchPush-v4", "--out", str(push_out), "--episodes", "2"])
    module.main()
    push = json.loads(push_out.read_text())
    assert [r["run"] for r in push["runs"]] == ["FetchPush/otpr/s0"]
    from otpr_sb3.benchmark.failures import PUSH_CATEGORIES

    run = push["runs"][0]
    assert run["success"] * 2 + sum(run[k] for k in PUSH_CATEGORIES) == 2
    push_table = module.failures_table(push, "FetchPush-v4")
    assert "     - never moved" in push_table and "no grasp" not in push_table
