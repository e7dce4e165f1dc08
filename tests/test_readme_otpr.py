"""The README's "Using otpr_sb3" block runs as written, at a smaller size (the first code an SB3 user copies).

Before, it loaded a 200-episode dataset that the README's demo does not record (the demo records 100), so it
failed on a fresh machine with the dataset missing.
"""

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (as written, as run here): the sizes only; each must be in the block, so an edit of the README breaks this test
SMALLER = [
    ("episodes=200", "episodes=3"),
    ("model.pretrain(demos, progress_bar=True)", "model.pretrain(demos, n_steps=20, progress_bar=False)"),
    ("model.learn(20_000, progress_bar=True)", "model.learn(120, progress_bar=False)"),
]


def test_readme_otpr_block_runs_on_a_fresh_directory(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index("## Using otpr_sb3")) + len("```python")
    block = text[start : text.index("```", start)]
    for written, smaller in SMALLER:
        assert block.count(written) == 1, written
        block = block.replace(written, smaller)
    monkeypatch.chdir(tmp_path)  # no dataset recorded before: the block records its own
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["card"].dataset_id == "otpr/fetchpickandplace-3ep-noise30-s0-v0"
    assert len(namespace["demos"]) > 0
    model = namespace["model"]
    assert model.num_timesteps == 120
    action = namespace["action"]
    assert action.shape == namespace["env"].action_space.shape and np.all(np.isfinite(action))
    assert (tmp_path / "otpr_pickplace.zip").exists()
