"""pytest-benchmark suite (not part of the test run): ``pytest benchmarks --benchmark-enable``.

Each group pairs neural_ot (or OTPR) with its reference on the same inputs in the same process; read the ratios.
"""

import torch as th


def pytest_configure(config):
    th.set_num_threads(1)  # as the sweeps run: one torch thread per process
