"""Give run records made before provenance was recorded the provenance that git history can tell.

For each ``spec.json`` under the folders given that has no ``provenance``, this adds one with

- ``recorded_in_commit`` and ``recorded_on``: the commit that first added the run's ``summary.json`` (or, for an
  unfinished run, its ``evaluations.csv``), and its date; the run's code was that commit or an older one;
- ``threads`` and ``device``: moved from the old spec's own fields (they were recorded, not reconstructed);
- ``commit``, ``dirty``, ``versions``, ``cpu``, ``cpu_flags`` and ``pair_precision``: ``null`` (not recoverable);
- ``reconstructed: true``, and ``reconstructed_fields`` naming the two fields that come from git history.

Usage: ``python scripts/reconstruct_provenance.py results/fetch/runs results/fetch/pair_precision``
"""

import json
import os
import subprocess
import sys


def first_commit(path: str) -> tuple[str, str] | None:
    out = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H %aI", "--", path], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    lines = [ln for ln in out if ln.strip()]
    if not lines:
        return None
    sha, date = lines[-1].split()
    return sha, date


def main(roots: list[str]) -> None:
    for root in roots:
        for dirpath, _, files in sorted(os.walk(root)):
            if "spec.json" not in files:
                continue
            path = os.path.join(dirpath, "spec.json")
            with open(path) as f:
                spec = json.load(f)
            if "provenance" in spec:
                continue
            record = "summary.json" if "summary.json" in files else "evaluations.csv"
            found = first_commit(os.path.join(dirpath, record))
            if found is None:
                print(f"skipped (not committed): {dirpath}")
                continue
            spec["provenance"] = {
                "reconstructed": True,
                "reconstructed_fields": ["recorded_in_commit", "recorded_on"],
                "recorded_in_commit": found[0],
                "recorded_on": found[1],
                "commit": None,
                "dirty": None,
                "versions": None,
                "cpu": None,
                "cpu_flags": None,
                "threads": spec.pop("threads", None),
                "device": spec.pop("device", None),
                "pair_precision": None,
            }
            with open(path, "w") as f:
                json.dump(spec, f, indent=1)
            print(f"{dirpath}: recorded in {found[0][:7]} on {found[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
