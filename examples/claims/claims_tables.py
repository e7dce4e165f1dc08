"""Tables of docs/claims.rst from the committed records in docs/data/claims/ (``tests/test_claims_page.py`` checks them)::

python examples/claims/claims_tables.py            # rewrites docs/claims_*.inc
"""

from __future__ import annotations

import json
import os
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
DATA = os.path.join(ROOT, "docs", "data", "claims")


def _load(name: str) -> dict[str, Any]:
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append("   * - " + row[0])
        lines.extend("     - " + cell for cell in row[1:])
    return "\n".join(lines) + "\n"


def dual_accuracy_table(record: dict[str, Any]) -> str:
    """Held-out marginal error, dual gap, H's non-zero share and time per update, per reg and lever."""
    rows = []
    for r in sorted(record["rows"], key=lambda r: (-r["reg"], r["heldout"], r["updates"])):
        ok = r["marginal_error"] <= 0.1 and r["dual_gap"] <= 0.05
        rows.append(
            [
                f"{r['reg']:g}",
                r["lever"],
                f"{r['marginal_error']:.3f}",
                f"{r['dual_gap']:.3f}",
                f"{r['h_nonzero_frac_heldout']:.2f}",
                f"{r['ms_per_update']:.0f}",
                "yes" if ok else "no",
            ]
        )
    header = ["reg", "lever", "held-out marginal error", "dual gap", "H > 0 (share of pairs)", "ms per update", "holds"]
    return _table(header, rows)


def mask_tv_table(record: dict[str, Any]) -> str:
    """TV distance between the replay block's plans with and without the relation term, per setting."""
    rows = [r for r in record["rows"] if r["relation_weight"] > 0]
    weights = sorted({r["relation_weight"] for r in rows})
    keys = sorted({(r["keypoints"], r["relation_scale"], r["reg"]) for r in rows}, key=lambda k: (k[1], k[0], -k[2]))
    out = []
    for K, scale, reg in keys:
        tvs = {
            r["relation_weight"]: r["tv"] for r in rows if (r["keypoints"], r["relation_scale"], r["reg"]) == (K, scale, reg)
        }
        spread = next(r["relation_spread"] for r in rows if (r["keypoints"], r["relation_scale"]) == (K, scale))
        out.append([scale, str(K), f"{spread:.3f}", f"{reg:g}", *(f"{tvs[w]:.3f}" for w in weights)])
    header = ["relation cost", "keypoints", "spread ratio", "reg", *(f"TV at w = {w:g}" for w in weights)]
    return _table(header, out)


def matched_table(records: list[dict[str, Any]]) -> str:
    """H's entropies and the matched temperatures of the Q and advantage guidances."""
    out = []
    for rec in records:
        for where in ("actor", "candidates"):
            d = rec[where]
            out.append(
                [
                    f"{rec['reg']:g}",
                    where,
                    f"{d['H_entropy']:.3f}",
                    f"{d['uniform_entropy']:.3f}",
                    f"{d['temperature']['q']:.3g}",
                    f"{d['entropy_at_T1']['q']:.3f}",
                    f"{d['temperature']['advantage']:.3g}",
                    f"{d['entropy_at_T1']['advantage']:.3f}",
                ]
            )
    header = [
        "reg",
        "weights",
        "H entropy",
        "uniform",
        "Q: matched T",
        "Q entropy at T = 1",
        "advantage: matched T",
        "advantage entropy at T = 1",
    ]
    return _table(header, out)


def tables() -> dict[str, str]:
    """File name -> content of every table the records allow."""
    out = {}
    if os.path.exists(os.path.join(DATA, "dual_accuracy.json")):
        out["claims_dual_accuracy.inc"] = dual_accuracy_table(_load("dual_accuracy.json"))
    if os.path.exists(os.path.join(DATA, "mask_tv.json")):
        out["claims_mask_tv.inc"] = mask_tv_table(_load("mask_tv.json"))
    matched = sorted(n for n in os.listdir(DATA) if n.startswith("matched_") and n.endswith(".json"))
    if matched:
        out["claims_matched.inc"] = matched_table([_load(n) for n in matched])
    return out


if __name__ == "__main__":
    for name, text in tables().items():
        with open(os.path.join(ROOT, "docs", name), "w") as f:
            f.write(text)
        print("wrote docs/" + name)
