"""`otpr record`: scripted demonstrations into local Minari datasets that load back with the env's spaces."""

import json
import os

import minari
import numpy as np
import pytest

from otpr_sb3 import Demonstrations
from otpr_sb3.benchmark.recording import dataset_id_for, load_card, record
from otpr_sb3.benchmark.tasks import get_task


@pytest.mark.parametrize("env_id", ["PointMaze_UMaze-v3", "FetchPush-v4"])
def test_recorded_dataset_loads_back_with_the_env_spaces(tmp_path, env_id):
    card = record(env_id, episodes=2, noise=0.3, seed=3, data_path=str(tmp_path))
    assert card.dataset_id == dataset_id_for(env_id, 2, 0.3, 3)
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path)
    dataset = minari.load_dataset(card.dataset_id)
    env = get_task(env_id).make_env()
    assert dataset.total_episodes == 2 and dataset.total_steps == card.transitions
    assert dataset.spec.observation_space == env.observation_space
    assert dataset.spec.action_space == env.action_space
    demos = Demonstrations.from_minari(card.dataset_id, data_path=str(tmp_path))
    demos.check_spaces(env.observation_space, env.action_space)
    assert len(demos) == card.transitions
    assert np.all(np.abs(demos.actions) <= 1.0)
    # The card is beside the data, in Minari's layout, and says what the dataset holds.
    with open(tmp_path / "otpr" / card.dataset_id.split("/")[1] / "card.json") as f:
        stored = json.load(f)
    assert stored["noise"] == 0.3 and stored["episodes"] == 2 and stored["seed"] == 3
    assert 0.0 <= stored["success_rate"] <= 1.0
    assert "std 0.3" in dataset.storage.metadata["description"]  # `minari show` prints it


def test_recording_is_reproducible_and_kept_unless_overwritten(tmp_path):
    a = record("PointMaze_UMaze-v3", episodes=2, seed=1, data_path=str(tmp_path / "a"))
    b = record("PointMaze_UMaze-v3", episodes=2, seed=1, data_path=str(tmp_path / "b"))
    da = Demonstrations.from_minari(a.dataset_id, data_path=str(tmp_path / "a"))
    db = Demonstrations.from_minari(b.dataset_id, data_path=str(tmp_path / "b"))
    np.testing.assert_array_equal(da.actions, db.actions)
    assert da.digest() == db.digest()  # what a run records of its data: equal for the same numbers
    c = Demonstrations.from_minari(
        record("PointMaze_UMaze-v3", episodes=2, seed=2, data_path=str(tmp_path / "a")).dataset_id,
        data_path=str(tmp_path / "a"),
    )
    assert c.digest() != da.digest()
    card_path = tmp_path / "a" / "otpr" / a.dataset_id.split("/")[1] / "card.json"
    mtime = card_path.stat().st_mtime_ns
    assert record("PointMaze_UMaze-v3", episodes=2, seed=1, data_path=str(tmp_path / "a")) == a
    assert card_path.stat().st_mtime_ns == mtime  # kept, not re-recorded
    record("PointMaze_UMaze-v3", episodes=2, seed=1, data_path=str(tmp_path / "a"), overwrite=True)
    assert card_path.stat().st_mtime_ns != mtime
    # A kept dataset of another version of the task (same name: RobosuiteLift-v1 -> -v2) is refused, not returned.
    stored = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**stored, "env_id": "PointMaze_UMaze-v2"}))
    with pytest.raises(ValueError, match="holds PointMaze_UMaze-v2 demonstrations, not PointMaze_UMaze-v3"):
        record("PointMaze_UMaze-v3", episodes=2, seed=1, data_path=str(tmp_path / "a"))


def test_task_defaults_and_bad_input(tmp_path):
    task = get_task("FetchPickAndPlace-v4")
    assert (task.demo_episodes, task.demo_noise) == (100, 0.3)  # the setting where BC lands in 30-70%
    with pytest.raises(ValueError, match="episodes"):
        record("PointMaze_UMaze-v3", episodes=0, data_path=str(tmp_path))
    with pytest.raises(ValueError, match="noise"):
        record("PointMaze_UMaze-v3", episodes=1, noise=-1.0, data_path=str(tmp_path))
    with pytest.raises(ValueError, match="benchmark tasks"):
        record("CartPole-v1", episodes=1, data_path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="otpr record"):
        load_card("otpr/missing-v0", str(tmp_path))


def test_mixed_quality_dataset_is_its_parts_in_order(tmp_path):
    from otpr_sb3.benchmark.recording import mixed_dataset_id, record_mixed

    card = record_mixed("PointMaze_UMaze-v3", [(2, 0.1), (3, 1.0)], seed=4, data_path=str(tmp_path))
    assert card.dataset_id == mixed_dataset_id("PointMaze_UMaze-v3", [(2, 0.1), (3, 1.0)], 4)
    assert card.episodes == 5 and [p["noise"] for p in card.parts] == [0.1, 1.0]
    assert [p["seed"] for p in card.parts] == [4, 1004]
    assert card.noise == pytest.approx((2 * 0.1 + 3 * 1.0) / 5)
    rate = (2 * card.parts[0]["success_rate"] + 3 * card.parts[1]["success_rate"]) / 5
    assert card.success_rate == pytest.approx(rate)
    mixed = Demonstrations.from_minari(card.dataset_id, data_path=str(tmp_path))
    parts = [
        Demonstrations.from_minari(dataset_id_for("PointMaze_UMaze-v3", n, nz, s), data_path=str(tmp_path))
        for n, nz, s in ((2, 0.1, 4), (3, 1.0, 1004))
    ]
    assert len(mixed) == card.transitions == sum(len(p) for p in parts)
    np.testing.assert_array_equal(mixed.actions, np.concatenate([p.actions for p in parts]))
    assert load_card(card.dataset_id, str(tmp_path)) == card  # the card round-trips, parts included
    with pytest.raises(ValueError, match="at least two"):
        record_mixed("PointMaze_UMaze-v3", [(2, 0.1)], data_path=str(tmp_path))


def test_multimodal_dataset_holds_both_approach_sides(tmp_path):
    import minari

    from otpr_sb3.benchmark.modes import lateral_side, mode_shares
    from otpr_sb3.benchmark.recording import mixed_dataset_id, record_mixed
    from otpr_sb3.demonstrations import minari_datasets_path

    parts = [(2, 0.0, "left"), (2, 0.0, "right")]
    card = record_mixed("FetchPickAndPlace-v4", parts, seed=0, data_path=str(tmp_path))
    assert (
        card.dataset_id
        == mixed_dataset_id("FetchPickAndPlace-v4", parts, 0)
        == ("otpr/fetchpickandplace-mix-2ep-noise0-left-2ep-noise0-right-s0-v0")
    )
    assert [p["expert"] for p in card.parts] == ["pick_and_place_from_left", "pick_and_place_from_right"]
    assert card.success_rate == 1.0  # noiseless, both variants succeed
    with minari_datasets_path(str(tmp_path)):
        episodes = list(minari.load_dataset(card.dataset_id).iterate_episodes())
    first = [int(lateral_side(ep.observations["observation"][0], ep.actions[:1])[0]) for ep in episodes]
    assert first == [1, 1, -1, -1]  # each part's first action bends to its own side
    assert mode_shares(np.array(first)) == {"left": 0.5, "right": 0.5, "modes": 2}
    with pytest.raises(ValueError, match="not an expert variant"):
        record_mixed("FetchPush-v4", [(1, 0.0, "left"), (1, 0.0, "right")], data_path=str(tmp_path))


def test_mode_counting_and_the_actor_sampler():
    import torch as th

    from otpr_sb3 import OTPR
    from otpr_sb3.benchmark.experts import EXPERT_VARIANTS
    from otpr_sb3.benchmark.modes import actor_mode_shares, lateral_side, mode_shares

    assert mode_shares(np.array([1] * 19 + [-1])) == {"left": 0.95, "right": 0.05, "modes": 1}
    obs = np.zeros(25)
    obs[3:5] = [0.1, 0.0]  # the object straight ahead (+x): left is +y
    assert list(lateral_side(obs, np.array([[0.5, 0.3, 0, 0], [0.5, -0.3, 0, 0], [1, 0, 0, 0]]))) == [1, -1, 0]
    obs[3:5] = [0.01, 0.0]
    assert list(lateral_side(obs, np.array([[0.5, 0.3, 0, 0]]))) == [0]  # at the object: no approach direction
    with pytest.raises(ValueError, match="empty"):
        mode_shares(np.array([]))
    # The sampler reads the actor's own samples: an actor that always answers with the left expert keeps one mode.
    import gymnasium as gym

    model = OTPR("MultiInputPolicy", "FetchPickAndPlace-v4", seed=0)
    left = EXPERT_VARIANTS["FetchPickAndPlace"]["left"]
    current, _ = gym.make("FetchPickAndPlace-v4").reset(seed=0)  # the sampler's first (and only) state

    def sample_actions(obs, noise):
        return th.as_tensor(np.stack([left(current)] * len(noise)), dtype=th.float32)

    model.policy.sample_actions = sample_actions
    shares = actor_mode_shares(model, n_states=1, n_samples=4, seed=0)
    assert shares == {"left": 1.0, "right": 0.0, "modes": 1}


def test_default_dataset_is_recorded_once_by_concurrent_callers(tmp_path, monkeypatch):
    """Two sweeps sharing a data path once raced to create the same Minari dataset, and the loser failed ("already
    exists"); `default_dataset` records under a lock in the data path, so a second caller waits and finds it."""
    import threading
    import time

    from otpr_sb3.benchmark import runner

    inside, most, made = [0], [0], []

    def slow_record(env_id, seed, data_path):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        inside[0] -= 1
        made.append(env_id)
        return env_id

    monkeypatch.setattr(runner, "record", slow_record)
    threads = [threading.Thread(target=runner.default_dataset, args=("FetchPush-v4", str(tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == ["FetchPush-v4"] * 3 and most[0] == 1  # one at a time
    assert (tmp_path / ".record.lock").exists()
