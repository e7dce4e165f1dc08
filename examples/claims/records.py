"""The run record the claims scripts write: the checkpoint, the arguments, the rows and the provenance."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from otpr_sb3.benchmark.provenance import provenance


def write_record(args: argparse.Namespace, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Write ``{"checkpoint", "args", "rows", **extra, "provenance"}`` to ``args.out`` (nothing without ``--out``)."""
    if not args.out:
        return
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    record = {"checkpoint": args.checkpoint, "args": vars(args), "rows": rows, **extra, "provenance": provenance("cpu")}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
