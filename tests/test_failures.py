"""Failed pick-and-place episodes are classified from their trajectories (synthetic Fetch observations)."""

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
