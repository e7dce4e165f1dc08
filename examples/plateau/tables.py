"""The tables of the plateau section of docs/results.rst from the records of ``evaluation_variants.py``::

python examples/plateau/tables.py      # rewrites docs/plateau_variants.inc and docs/plateau_variants_final.inc
"""

from __future__ import annotations

import json
import os
from typing import Any

from otpr_sb3.benchmark.failures import CATEGORIES, NO_GRASP_KINDS
from otpr_sb3.benchmark.report_rst import list_table

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
DATA = os.path.join(ROOT, "docs", "data", "plateau")
#: Record (in docs/data/plateau) -> include (in docs): a checkpoint after 4,000 steps, and a run's final model.
TABLES = {"variants.json": "plateau_variants.inc", "variants_final.json": "plateau_variants_final.inc"}


def variants_table(record: dict[str, Any]) -> str:
    """Success and failed episodes by kind, per way of acting (with the kinds of "no grasp" where recorded)."""
    split = all(k in r for r in record["rows"] for k in NO_GRASP_KINDS)
    kinds = (*NO_GRASP_KINDS, *CATEGORIES[1:]) if split else CATEGORIES
    header = ["acting", "success", *(f"no grasp: {k}" if k in NO_GRASP_KINDS else k for k in kinds)]
    rows = [[r["variant"], f"{r['success']:.2f}", *(str(r[k]) for k in kinds)] for r in record["rows"]]
    return list_table(header, rows)


def tables() -> dict[str, str]:
    """Include name -> content, for every record that exists."""
    out = {}
    for record, include in TABLES.items():
        path = os.path.join(DATA, record)
        if os.path.exists(path):
            with open(path) as f:
                out[include] = variants_table(json.load(f))
    return out


if __name__ == "__main__":
    for include, text in tables().items():
        with open(os.path.join(ROOT, "docs", include), "w") as f:
            f.write(text)
        print(f"wrote docs/{include}")
