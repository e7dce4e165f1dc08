"""OTPR's step against its own Q-guidance loop, component by component, from two ``profile_otpr_step.py`` outputs.

Run (one thread, an idle machine; the raw outputs are the records)::

    python examples/benchmarks/profile_otpr_step.py --finetune --no-cprofile --steps 600 --warmup 500 > H.txt
    python examples/benchmarks/profile_otpr_step.py --finetune --no-cprofile --steps 600 --warmup 500 --guidance q > Q.txt
    python examples/benchmarks/overhead_table.py H.txt Q.txt > docs/overhead_by_component.inc

The table gives each component's milliseconds per env step in both loops and the difference, the OT overhead.
"""

from __future__ import annotations

import argparse
import re

from otpr_sb3.benchmark.report_rst import list_table


def read_profile(text: str) -> tuple[float, dict[str, float]]:
    """Return the total ms per env step and the ms per env step of each component of a profile's output."""
    total = re.search(r"([0-9.]+) ms per env step", text)
    if total is None:
        raise ValueError("`text` is not an output of profile_otpr_step.py (no total per env step)")
    parts = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and re.fullmatch(r"[0-9.]+", cells[1]):
            parts[cells[0]] = float(cells[1])
    return float(total.group(1)), parts


def table(h_text: str, q_text: str) -> str:
    """RST table: component, OTPR (H guidance), its Q loop and the difference, in ms per env step."""
    h_total, h = read_profile(h_text)
    q_total, q = read_profile(q_text)
    rows = []
    for name, ms in h.items():
        if name.startswith("of which") or name.startswith("across"):
            rows.append([f"({name})", f"{ms:.1f}", f"{q.get(name, 0.0):.1f}", ""])
        else:
            rows.append([name, f"{ms:.1f}", f"{q.get(name, 0.0):.1f}", f"{ms - q.get(name, 0.0):+.1f}"])
    rows.append(["total", f"{h_total:.1f}", f"{q_total:.1f}", f"{h_total - q_total:+.1f}"])
    return list_table(["component", "OTPR (ms per env step)", "Q loop (ms per env step)", "difference"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h_profile")
    parser.add_argument("q_profile")
    args = parser.parse_args()
    with open(args.h_profile) as fh, open(args.q_profile) as fq:
        print(table(fh.read(), fq.read()), end="")


if __name__ == "__main__":
    main()
