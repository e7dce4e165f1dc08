"""One torch thread for small CPU work: the thread count is process-wide, so it is set around the work and restored.

Small problems' operations are too short to share between threads, and when other processes keep the cores busy a
torch thread waiting for its partner spins while the partner is descheduled (beside two single-threaded training
runs, two threads ran OTPR's behaviour cloning 0.03x as fast as one, docs/benchmarks_howto.rst; a stochastic dual's
minibatch steps are as small); beside numpy code whose BLAS threads spin between calls (POT, for one), two torch
threads waited for each other up to 9x longer on the 90-point keypoint demo (docs/benchmarks.rst).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch as th

#: Up to this many cost pairs (a discrete problem's matrix, a stochastic solver's minibatch) CPU work runs on one thread.
ONE_THREAD_PAIRS = 250_000


@contextlib.contextmanager
def one_thread_if_small(pairs: int, device: th.device | str) -> Iterator[None]:
    """Run the block on one torch thread when it works on at most :data:`ONE_THREAD_PAIRS` pairs on the CPU.

    The caller's thread count is restored after, also when the block raises. Torch work in other Python threads
    during the block runs on one thread too.
    """
    threads = th.get_num_threads()
    if th.device(device).type != "cpu" or pairs > ONE_THREAD_PAIRS or threads == 1:
        yield
        return
    th.set_num_threads(1)
    try:
        yield
    finally:
        th.set_num_threads(threads)
