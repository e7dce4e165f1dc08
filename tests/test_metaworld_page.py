"""The Meta-World section of docs/benchmarks_howto.rst: tables generated from the records, sentences that hold."""

import json
from pathlib import Path

from otpr_helpers import load_script

from otpr_sb3.benchmark.metaworld_envs import METAWORLD_IDS
from otpr_sb3.benchmark.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "metaworld"
PAGE = (ROOT / "docs" / "benchmarks_howto.rst").read_text()


def _module():
    return load_script("examples/benchmarks/task_tables.py", "task_tables")


def test_tables_are_the_records():
    tables = _module().tables()
    assert {"metaworld_experts.inc", "metaworld_calibration.inc"} <= set(tables)  # and robosuite's (its own test)
    for name, text in tables.items():
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: run examples/benchmarks/task_tables.py"


def test_expert_sentences():
    rows = json.loads((DATA / "experts.json").read_text())["rows"]
    clean = [r for r in rows if r["noise"] == 0.0]
    assert sorted(r["env_id"] for r in clean) == sorted(METAWORLD_IDS)
    longest = [r["length_max"] for r in clean]
    assert (min(longest), max(longest)) == (62, 186)  # "the longest successful episodes take 62-186 steps"
    assert max(longest) < min(cap for _, cap in METAWORLD_IDS.values()) == 200  # "capped at 200 steps"
    assert "62-186 steps" in PAGE and "capped at 200 steps" in PAGE


def test_every_default_setting_was_calibrated_and_lands_in_the_band():
    runs = _module().calibration_runs()
    for env_id, task in TASKS.items():
        if not env_id.startswith("MetaWorld"):
            continue
        mine = [r for r in runs if (r["env_id"], r["episodes"], r["noise"]) == (env_id, task.demo_episodes, task.demo_noise)]
        assert len(mine) == 1, f"{env_id}: its default demonstrations have no calibration run"
        assert 0.2 <= mine[0]["bc"] <= 0.6, f"{env_id}: BC {mine[0]['bc']} outside the 20-60% band"


def test_fetch_on_other_mujoco_sentence():
    rows = {r["mujoco"]: r["tasks"] for r in json.loads((DATA / "fetch_on_mujoco.json").read_text())["rows"]}
    assert set(rows) == {"3.11.0", "3.3.0"}
    pick = [rows[v]["FetchPickAndPlace-v4"]["success_noise0.3"] for v in ("3.11.0", "3.3.0")]
    push = [rows[v]["FetchPush-v4"]["success_noise0.3"] for v in ("3.11.0", "3.3.0")]
    assert pick == [0.60, 0.66] and push == [0.62, 0.54]
    assert "0.60 of the episodes on 3.11.0 and 0.66 on 3.3.0, the pusher in 0.62 and 0.54" in " ".join(PAGE.split())


def test_default_setting_sentences():
    runs = _module().calibration_runs()

    def bc(env_id, episodes, noise):
        (r,) = [r for r in runs if (r["env_id"], r["episodes"], r["noise"]) == (env_id, episodes, noise)]
        return r["bc"]

    assert (bc("MetaWorldPickPlace-v3", 10, 0.5), bc("MetaWorldPickPlace-v3", 100, 0.5)) == (0.46, 0.94)
    assert bc("MetaWorldPegInsertSide-v3", 100, 0.5) == 0.40 and bc("MetaWorldAssembly-v3", 100, 0.5) == 0.44
    assert (bc("MetaWorldStickPull-v3", 100, 0.5), bc("MetaWorldStickPull-v3", 25, 0.5)) == (0.86, 0.88)
    assert "MetaWorldStickPull-v3" not in TASKS
    text = " ".join(PAGE.split())
    for phrase in (
        "10 demonstrations at noise 0.5 (BC 0.46; 100 gave 0.94)",
        "100 at noise 0.5 (BC 0.40)",
        "100 at noise 0.5 (BC 0.44)",
        "BC reached 0.86 and 0.88 from 100 and 25",
    ):
        assert phrase in text, phrase
