"""Ratio table of a pytest-benchmark JSON for docs/benchmarks.rst, and the comparison of two records::

pytest benchmarks --benchmark-enable --benchmark-json=docs/data/benchmarks/pytest-benchmark.json
python benchmarks/report.py docs/data/benchmarks/pytest-benchmark.json > docs/benchmarks_pytest.inc
python benchmarks/report.py docs/data/benchmarks/pytest-benchmark.json --compare OLD.json > docs/benchmarks_compare.inc
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def table(data: dict[str, Any]) -> str:
    """One row per benchmark: its group, median time, and the ratio to the fastest of its group."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - group",
        "     - benchmark",
        "     - median (ms)",
        "     - rounds",
        "     - / fastest in group",
        "     - marginal error",
    ]
    for group in sorted(groups):
        rows = sorted(groups[group], key=lambda b: b["stats"]["median"])
        fastest = rows[0]["stats"]["median"]
        for b in rows:
            err = b.get("extra_info", {}).get("marginal_error")
            lines += [
                f"   * - {group}",
                f"     - ``{b['name']}``",
                f"     - {1e3 * b['stats']['median']:.2f}",
                f"     - {b['stats']['rounds']}",
                f"     - {b['stats']['median'] / fastest:.2f}",
                "     - " + ("" if err is None else f"{err:.1e}"),
            ]
    machine = data["machine_info"]
    lines += [
        "",
        f"Measured {data['datetime'][:10]} on {machine.get('cpu', {}).get('brand_raw', 'an unknown CPU')}, "
        f"commit ``{data.get('commit_info', {}).get('id', '?')[:7]}``, one torch thread.",
    ]
    return "\n".join(lines) + "\n"


def compare(new: dict[str, Any], old: dict[str, Any]) -> str:
    """One row per benchmark in both records: the old and new medians and their ratio (new / old)."""
    before = {b["fullname"]: b for b in old["benchmarks"]}
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - group",
        "     - benchmark",
        "     - before: median (ms)",
        "     - now: median (ms)",
        "     - now / before",
    ]
    for b in sorted(new["benchmarks"], key=lambda b: (b["group"], b["name"])):
        if b["fullname"] not in before:
            continue
        was, now = before[b["fullname"]]["stats"]["median"], b["stats"]["median"]
        lines += [
            f"   * - {b['group']}",
            f"     - ``{b['name']}``",
            f"     - {1e3 * was:.2f}",
            f"     - {1e3 * now:.2f}",
            f"     - {now / was:.2f}",
        ]
    commit = old.get("commit_info", {}).get("id", "?")[:7]
    lines += [
        "",
        f"Before: {old['datetime'][:10]}, commit ``{commit}``; now: {new['datetime'][:10]}, commit "
        f"``{new.get('commit_info', {}).get('id', '?')[:7]}``.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        data = json.load(f)
    if "--compare" in sys.argv:
        with open(sys.argv[sys.argv.index("--compare") + 1]) as f:
            sys.stdout.write(compare(data, json.load(f)))
    else:
        sys.stdout.write(table(data))
