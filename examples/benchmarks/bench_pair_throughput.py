"""How close the critics on pairs run to the CPU's bfloat16 matrix throughput (the speed issue's last lever).

OTPR's OT work is mostly the twin critics on many (state, action) pairs: the dual's 48 x 48 cost matrix and H with
``u(s)`` over the actor's 256 states x 9 actions. This script times those two evaluations as OTPR runs them
(:meth:`otpr_sb3.critics.TwinQCritic._split_min`, bfloat16 hidden layers with the ReLU fused, kept weights; the
actor's also with its first layer split, as before ``12ccda6``) and, in the same process, one hidden layer alone on
the same rows and on a large batch (the throughput the CPU reaches at this width). If a pair evaluation runs near
that throughput, it is arithmetic-bound: only fewer pairs make it shorter. Floating-point operations are counted
from the shapes (products and additions of the four layers of each critic, the first layer split into its state and
action parts; the concatenated first layer does a little more). One torch thread::

    python examples/benchmarks/bench_pair_throughput.py --out docs/data/pair_throughput.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch as th
from bench_otpr_speed import split_first_layer_min
from torch.utils.benchmark import Timer

from otpr_sb3.benchmark.provenance import provenance
from otpr_sb3.critics import TwinQCritic

OBS_DIM, ACT_DIM, WIDTH = 31, 4, 256  # FetchPickAndPlace's prepared observation and action; OTPR's 3 x 256 critics
#: name -> (states, actions per state, actions shared by every state)
SHAPES = {"dual 48 x 48": (48, 48, True), "actor 256 x 9": (256, 9, False)}


def pair_flops(n: int, m: int, shared: bool) -> int:
    """Floating-point operations of one twin-critic evaluation on ``n`` states x ``m`` actions."""
    rows, act_rows = n * m, m if shared else n * m
    first = 2 * n * OBS_DIM * WIDTH + 2 * act_rows * ACT_DIM * WIDTH + rows * WIDTH
    hidden = 2 * 2 * rows * WIDTH * WIDTH
    return 2 * (first + hidden + 2 * rows * WIDTH)


def seconds(stmt: str, env: dict[str, Any], min_run_time: float) -> float:
    """Median seconds per call of ``stmt`` (torch's blocked autorange)."""
    return Timer(stmt, globals=env, num_threads=1).blocked_autorange(min_run_time=min_run_time).median


def measure(min_run_time: float = 2.0) -> list[dict[str, Any]]:
    """Time each pair evaluation and the hidden layer alone; return one row per shape and one for the large batch."""
    th.manual_seed(0)
    critic = TwinQCritic(OBS_DIM, ACT_DIM, pair_precision="bfloat16")
    critic.keep_pair_weights(th.optim.Adam(critic.parameters()))
    layer = critic.q_networks[0][2]
    w, b = layer.weight.detach().bfloat16(), layer.bias.detach().bfloat16()
    linear = th.ops.mkldnn._linear_pointwise
    rows_out = []
    with th.no_grad():
        for name, (n, m, shared) in SHAPES.items():
            obs = th.randn(n, OBS_DIM)
            act = th.rand(1, m, ACT_DIM) if shared else th.rand(n, m, ACT_DIM)
            env = {"critic": critic, "obs": obs, "act": act, "shape": (n, m)}
            h = th.randn(n * m, WIDTH).bfloat16()
            one = seconds("linear(h, w, b, 'relu', [], '')", {"linear": linear, "h": h, "w": w, "b": b}, min_run_time)
            ways = {name: "critic._split_min(obs, act, shape)"}
            if not shared:  # each state's own actions: also as before 12ccda6, the first layer split
                ways[f"{name}, first layer split"] = "split(critic, obs, act, shape)"
            for label, stmt in ways.items():
                pair = seconds(stmt, {**env, "split": split_first_layer_min}, min_run_time)
                flops = pair_flops(n, m, shared)
                row = {"pairs": label, "rows": n * m, "ms": 1e3 * pair, "gflops": flops / pair / 1e9}
                rows_out.append({**row, "hidden_layer_ms": 1e3 * one})
        big = th.randn(16384, WIDTH).bfloat16()
        one = seconds("linear(h, w, b, 'relu', [], '')", {"linear": linear, "h": big, "w": w, "b": b}, min_run_time)
        rows_out.append({"pairs": "one hidden layer, 16384 rows", "rows": 16384, "ms": 1e3 * one})
        rows_out[-1]["gflops"] = 2 * 16384 * WIDTH * WIDTH / one / 1e9
    return rows_out


def table(record: dict[str, Any]) -> str:
    """The record as a list-table: time, GFLOP/s, share of the large batch's throughput, the four hidden layers' share."""
    from otpr_sb3.benchmark.report_rst import list_table

    peak = record["rows"][-1]["gflops"]
    out = []
    for r in record["rows"]:
        hidden = f"{4 * r['hidden_layer_ms'] / r['ms']:.0%}" if "hidden_layer_ms" in r else "n/a"
        out.append([r["pairs"], f"{r['ms']:.2f}", f"{r['gflops']:.0f}", f"{r['gflops'] / peak:.0%}", hidden])
    header = ["evaluation", "ms", "GFLOP/s", "of the large batch's GFLOP/s", "its four hidden layers, timed alone"]
    return list_table(header, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the record (JSON) here")
    parser.add_argument("--table", help="print the list-table of a record instead of measuring")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds of timing per measurement")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)), end="")
        return
    th.set_num_threads(1)
    record = {"provenance": provenance(device="cpu"), "rows": measure(args.min_run_time)}
    print(table(record), end="")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
