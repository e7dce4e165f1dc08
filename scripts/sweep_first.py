"""Move the ``[[runs]]`` groups of a sweep file that name one task and method to the top, keeping every other line.

The sweep runs seeds outermost and, within a seed, the groups in file order. A study whose runs differ widely in
length (the baselines report's RLPD-HER on FetchPush: two hours, the others 20-55 minutes) starts its longest run
of each seed first, so that it fits in one working session; a machine does not keep an unfinished run's checkpoint
between sessions. The order changes when each run starts, not what it computes::

    python scripts/sweep_first.py SWEEP.toml FetchPush-v4 rlpd-her   # rewrites SWEEP.toml in place
"""

from __future__ import annotations

import sys


def move_first(text: str, env: str, method: str) -> str:
    """Return ``text`` with the groups of ``env`` and ``method`` (and the comment lines just above each) first.

    Raises
    ------
    ValueError
        If no group names ``env`` with ``method`` as its only method.
    """
    lines = text.splitlines(keepends=True)
    starts, header = [], -1  # each group's first line; the line of the last [[runs]] header
    for i, line in enumerate(lines):
        if line.strip() == "[[runs]]":
            first = i
            while first - 1 > header and lines[first - 1].startswith("#"):
                first -= 1
            starts.append(first)
            header = i
    if not starts:
        raise ValueError("no [[runs]] group in the sweep file")
    groups = ["".join(lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)])]
    wanted = [g for g in groups if f'env = "{env}"\n' in g and f'methods = ["{method}"]\n' in g]
    if not wanted:
        raise ValueError(f"no [[runs]] group of env {env!r} with methods [{method!r}]")
    rest = [g for g in groups if g not in wanted]
    body = "".join(g if g.endswith("\n") else g + "\n" for g in wanted + rest)
    return "".join(lines[: starts[0]]) + body


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/sweep_first.py SWEEP.toml ENV METHOD")
    path, env, method = sys.argv[1:]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(move_first(text, env, method))


if __name__ == "__main__":
    main()
