"""pytest-benchmark suite (not part of the test run): ``pytest benchmarks --benchmark-enable``.

Each group pairs neural_ot (or OTPR) with its reference on the same inputs in the same process; read the ratios.
"""

import sys
from pathlib import Path

import torch as th

# The example benchmarks' helpers (``bench_otpr_speed.autocast_split_min``), importable as their scripts import them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "benchmarks"))


def pytest_configure(config):
    th.set_num_threads(1)  # as the sweeps run: one torch thread per process
