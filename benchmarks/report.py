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

from otpr_sb3.benchmark.report_rst import list_table


def table(data: dict[str, Any]) -> str:
    """One row per benchmark: its group, median time, and the ratio to the fastest of its group."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    rows = []
    for group in sorted(groups):
        ordered = sorted(groups[group], key=lambda b: b["stats"]["median"])
        fastest = ordered[0]["stats"]["median"]
        for b in ordered:
            err = b.get("extra_info", {}).get("marginal_error")
            rows.append(
                [
                    group,
                    f"``{b['name']}``",
                    f"{1e3 * b['stats']['median']:.2f}",
                    str(b["stats"]["rounds"]),
                    f"{b['stats']['median'] / fastest:.2f}",
                    "" if err is None else f"{err:.1e}",
                ]
            )
    headers = ["group", "benchmark", "median (ms)", "rounds", "/ fastest in group", "marginal error"]
    machine = data["machine_info"]
    return (
        list_table(headers, rows)
        + f"\nMeasured {data['datetime'][:10]} on {machine.get('cpu', {}).get('brand_raw', 'an unknown CPU')}, "
        f"commit ``{data.get('commit_info', {}).get('id', '?')[:7]}``, one torch thread.\n"
    )


def compare(new: dict[str, Any], old: dict[str, Any]) -> str:
    """One row per benchmark in both records: the old and new medians and their ratio (new / old)."""
    before = {b["fullname"]: b for b in old["benchmarks"]}
    rows = []
    for b in sorted(new["benchmarks"], key=lambda b: (b["group"], b["name"])):
        if b["fullname"] not in before:
            continue
        was, now = before[b["fullname"]]["stats"]["median"], b["stats"]["median"]
        rows.append([b["group"], f"``{b['name']}``", f"{1e3 * was:.2f}", f"{1e3 * now:.2f}", f"{now / was:.2f}"])
    headers = ["group", "benchmark", "before: median (ms)", "now: median (ms)", "now / before"]
    commit = old.get("commit_info", {}).get("id", "?")[:7]
    return (
        list_table(headers, rows) + f"\nBefore: {old['datetime'][:10]}, commit ``{commit}``; now: {new['datetime'][:10]}, "
        f"commit ``{new.get('commit_info', {}).get('id', '?')[:7]}``.\n"
    )


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        data = json.load(f)
    if "--compare" in sys.argv:
        with open(sys.argv[sys.argv.index("--compare") + 1]) as f:
            sys.stdout.write(compare(data, json.load(f)))
    else:
        sys.stdout.write(table(data))
