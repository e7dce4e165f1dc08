"""How many approach modes an OTPR checkpoint's actor keeps on regime (d) of the claims study (docs/claims.rst).

Run: ``python examples/claims/regime_d_modes.py CHECKPOINT.zip [--out docs/data/claims/regime_d_bc_modes.json]``.
At the first observation of 20 episodes (seeds 0-19) the actor draws 32 samples each (its own DDIM samples, not the
candidates a guidance selects); each sample's side is the sign of its horizontal component perpendicular to the
direction of the object (:mod:`otpr_sb3.benchmark.modes`). A mode is kept if at least 10% of the samples take it.
"""

from __future__ import annotations

import argparse
import json
import os

from otpr_sb3 import OTPR
from otpr_sb3.benchmark.modes import actor_mode_shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    model = OTPR.load(args.checkpoint, device="cpu")
    result = {"checkpoint": os.path.basename(args.checkpoint), **actor_mode_shares(model, n_states=20, n_samples=32, seed=0)}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
