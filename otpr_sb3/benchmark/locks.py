"""File locks that keep processes of one machine from writing the same run, dataset or checkpoint at once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def locked(path: str, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive file lock on ``path`` (created, with its folder, if missing).

    Parameters
    ----------
    path : str
        The lock file.
    busy : str, optional
        Without it, wait for the lock: concurrent runs (sweep trials) wait for the one that builds a shared file.
        With it, refuse at once if another process holds the lock, raising ``RuntimeError(busy)`` (a run's own
        directory).
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if busy is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
