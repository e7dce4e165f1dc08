"""The command line shared by the benchmark scripts that write a JSON record and print its docs table.

Each such script takes ``--out RECORD`` (where its measurements go) and ``--table RECORD`` (print the docs include
made from a committed record, and exit), so that a page's table is always regenerated from its record.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable
from typing import Any


def record_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with ``--out`` and ``--table``, described by the first line of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the measurements to this JSON record")
    parser.add_argument("--table", default=None, help="print the docs table of this record and exit")
    return parser


def printed_table(args: argparse.Namespace, table: Callable[..., str], *options: Any) -> bool:
    """Print ``table(record, *options)`` of the ``--table`` record; whether there was one (then the script exits)."""
    if not args.table:
        return False
    with open(args.table) as f:
        print(table(json.load(f), *options), end="")
    return True


def save_label(path: str, label: str, entry: dict[str, Any]) -> None:
    """Store ``entry`` under ``label`` in the JSON record at ``path``, keeping its other labels."""
    record = {}
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
    record[label] = entry
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def write_record(path: str, args: argparse.Namespace, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Write ``rows`` to the JSON record at ``path`` with the arguments, the checkout, torch's version, the BLAS
    threads asked for, the load average and the CPU (a solver benchmark's provenance), and ``extra`` fields."""
    import torch as th

    from otpr_sb3.benchmark.provenance import cpu_info, git_state

    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "loadavg": os.getloadavg(), **cpu_info()}
    with open(path, "w") as f:
        record = {"args": vars(args), "rows": rows, "git": git_state(), "torch": th.__version__, "env": env, **extra}
        json.dump(record, f, indent=1)


def checkout(module_file: str) -> dict[str, object]:
    """Commit and dirtiness of the git checkout holding the package whose ``__init__`` is ``module_file``."""
    where = os.path.dirname(os.path.dirname(os.path.abspath(module_file)))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, check=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
