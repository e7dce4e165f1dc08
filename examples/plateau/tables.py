"""The table of the plateau section of docs/results.rst from ``docs/data/plateau/variants.json``::

python examples/plateau/tables.py      # rewrites docs/plateau_variants.inc
"""

from __future__ import annotations

import json
import os

from otpr_sb3.benchmark.report_rst import list_table

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
RECORD = os.path.join(ROOT, "docs", "data", "plateau", "variants.json")
OUT = os.path.join(ROOT, "docs", "plateau_variants.inc")


def variants_table(record: dict) -> str:
    """Success and failed episodes by kind, per way of acting."""
    header = ["acting", "success", "no grasp", "dropped", "held, not placed"]
    rows = [
        [r["variant"], f"{r['success']:.2f}", str(r["no grasp"]), str(r["dropped"]), str(r["held, not placed"])]
        for r in record["rows"]
    ]
    return list_table(header, rows)


def table() -> str:
    """The include's content."""
    with open(RECORD) as f:
        return variants_table(json.load(f))


if __name__ == "__main__":
    with open(OUT, "w") as f:
        f.write(table())
    print("wrote docs/plateau_variants.inc")
