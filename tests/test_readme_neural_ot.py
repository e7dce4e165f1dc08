"""The README's "Using neural_ot" block runs as written (the first code a neural_ot user copies)."""

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_neural_ot_block_runs():
    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index("## Using neural_ot")) + len("```python")
    block = text[start : text.index("```", start)]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["res"].status == "converged"
    y = namespace["y"]
    assert np.all(np.isfinite(np.asarray(namespace["H"](namespace["x"][:5], y[:5]))))
    relaxed = namespace["relaxed"]
    # The semi-relaxed fit's marginal error is measured against b (1 - v / rho), so it goes to zero as for balanced.
    assert np.isfinite(relaxed.marginal_error) and relaxed.marginal_error < 0.3
