"""Turn the Markdown tables of a benchmark's raw output into the RST list-tables that docs/benchmarks.rst includes.

Run: ``python examples/benchmarks/markdown_tables.py docs/data/bench_neural_ot-2026-12-04.txt`` writes one
``docs/bench_<slug>_table.inc`` per table it finds (the slug names the table by its heading, see :data:`SLUGS`);
``--name NAME`` writes ``docs/bench_<NAME>_<slug>_table.inc`` instead (for several records of one script).
``tests/test_benchmark_pages.py`` checks that the committed ``.inc`` files are this conversion of the committed record.
"""

from __future__ import annotations

import os

from otpr_sb3.benchmark import report_rst

#: Heading prefix of a table in the raw output -> slug of its include file.
SLUGS = {
    "### Exact L2 solver": "l2",
    "### Exact entropic solver": "entropic",
    "### Entropic OT on large clouds": "large",
    "### Stochastic `L2Dual`": "stochastic",
    "### Fine-tuning speed": "speed",
    "### Fine-tuning CPU time": "cpu",
    "### Per-action inference latency": "latency",
}


def tables(text: str) -> dict[str, list[list[str]]]:
    """Slug -> rows of cells (the header first) of each Markdown table under a known heading that has rows."""
    out: dict[str, list[list[str]]] = {}
    slug = None
    for line in text.splitlines():
        if line.startswith("###"):
            slug = next((s for prefix, s in SLUGS.items() if line.startswith(prefix)), None)
        elif slug and line.startswith("|") and not line.startswith("|---"):
            out.setdefault(slug, []).append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return {slug: rows for slug, rows in out.items() if len(rows) > 1}  # a part not run prints its header alone


def list_table(rows: list[list[str]]) -> str:
    """An RST list-table of the rows, the first being the header (:func:`otpr_sb3.benchmark.report_rst.list_table`)."""
    return report_rst.list_table(rows[0], rows[1:])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record")
    parser.add_argument("--name", default=None, help="part of the include files' names")
    args = parser.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
    with open(args.record) as f:
        found = tables(f.read())
    for slug, rows in found.items():
        out = os.path.join(root, "docs", f"bench_{args.name + '_' if args.name else ''}{slug}_table.inc")
        with open(out, "w") as f:
            f.write(list_table(rows))
        print(f"wrote {os.path.relpath(out, root)}")


if __name__ == "__main__":
    main()
