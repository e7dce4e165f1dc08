"""Tables of docs/claims.rst from the committed records in docs/data/claims/ (``tests/test_claims_page.py`` checks them)::

python examples/claims/claims_tables.py            # rewrites docs/claims_*.inc
"""

from __future__ import annotations

import json
import os
from typing import Any

from otpr_sb3.benchmark.collect import finished_runs
from otpr_sb3.benchmark.decision import last_five
from otpr_sb3.benchmark.report import area_under_curve
from otpr_sb3.benchmark.report_rst import list_table, write_includes

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
DATA = os.path.join(ROOT, "docs", "data", "claims")
TUNING = os.path.join(ROOT, "results", "claims", "tuning", "runs")
#: The second wave's tuning runs: every arm with ``actor_targets="candidates"`` (claims_candidates_tuning.toml), the
#: candidate targets fitted once the guidance is ready.
CANDIDATES_TUNING = os.path.join(ROOT, "results", "claims", "candidates_ready_tuning", "runs")
#: Its first attempt, at commit 194799c, where the candidate targets were fitted from the first update (stopped).
CANDIDATES_FIRST_ATTEMPT = os.path.join(ROOT, "results", "claims", "candidates_tuning", "runs")


def _load(name: str) -> dict[str, Any]:
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


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
    return list_table(header, rows)


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
    return list_table(header, out)


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
    return list_table(header, out)


def arm_of(spec: dict[str, Any]) -> tuple[str, str]:
    """The protocol's arm of a run and its configuration, from the run's ``spec.json``."""
    kwargs, guidance = spec["kwargs"], spec["policy_kwargs"].get("guidance_kwargs", {})
    method = spec["method"]
    rho = kwargs.get("dual_kwargs", {}).get("unbalanced")
    if method == "otpr" and rho is not None:  # not an arm of the protocol: the relaxed-marginal probe's
        masked = "" if kwargs.get("use_mask", True) else ", unmasked"
        return f"H{masked}, action marginal relaxed", f"reg {kwargs['reg']:g}, rho {rho:g}"
    if method == "otpr" and kwargs.get("use_mask") is False:
        return "H, unmasked", f"reg {kwargs['reg']:g}"
    if method == "otpr":
        return "H", f"relation weight {kwargs['relation_weight']:g}"
    if method in ("otpr-q", "otpr-adv"):
        return {"otpr-q": "Q", "otpr-adv": "advantage"}[method], f"temperature {guidance['temperature']:g}"
    if method == "otpr-authors":
        return "authors' release", f"reg {kwargs['reg']:g}"
    raise ValueError(f"not an arm of the claims protocol: {method!r}")


def tuning_runs(runs_dir: str = TUNING) -> list[dict[str, Any]]:
    """The finished tuning runs: arm, configuration, seed, both primary metrics, env steps/s and commit."""
    return [run_record(*run) for _, *run in finished_runs(runs_dir)]


def run_record(spec: dict[str, Any], summary: dict[str, Any], rows: list[dict[str, float]]) -> dict[str, Any]:
    """One finished run: arm, configuration, seed, both primary metrics, final success, env steps/s, commit, CPU."""
    arm, config = arm_of(spec)
    return {
        "arm": arm,
        "config": config,
        "seed": spec["seed"],
        "dataset": spec["dataset"],
        "last_five": last_five(rows),
        "auc": area_under_curve(rows),
        "final": summary["final_success"],
        "env_steps_per_s": summary["env_steps_per_s"],
        "commit": spec["provenance"]["commit"][:7],
        "cpu": spec["provenance"]["cpu"],
    }


ARMS = ("H", "H, unmasked", "Q", "advantage", "authors' release")


def chosen_configs(runs: list[dict[str, Any]], seeds: tuple[int, ...] = (100, 101)) -> dict[str, str]:
    """Per arm whose configurations all have every tuning seed: the one with the higher mean last-five success.

    A tie (equal to the reported two decimals) goes to the higher mean AUC, the second primary metric.
    """
    chosen = {}
    for arm in ARMS:
        configs = sorted({r["config"] for r in runs if r["arm"] == arm})
        scores = {}
        for config in configs:
            done = [r for r in runs if (r["arm"], r["config"]) == (arm, config) and r["seed"] in seeds]
            if sorted(r["seed"] for r in done) != sorted(seeds):
                break
            n = len(done)
            scores[config] = (round(sum(r["last_five"] for r in done) / n, 2), sum(r["auc"] for r in done) / n)
        else:
            if len(configs) == 2:
                chosen[arm] = max(scores, key=lambda c: scores[c])
    return chosen


def tuning_table(runs: list[dict[str, Any]], with_kept: bool = True) -> str:
    """Every tuning run by arm and configuration, with the configuration kept where the arm is complete.

    ``with_kept=False``: without the "kept" column (a stopped attempt, whose choice is never made).
    """
    chosen = chosen_configs(runs)
    rows = []
    for r in sorted(runs, key=lambda r: (ARMS.index(r["arm"]), r["config"], r["seed"])):
        kept = "yes" if chosen.get(r["arm"]) == r["config"] else ("no" if r["arm"] in chosen else "pending")
        rows.append(
            [
                r["arm"],
                r["config"],
                str(r["seed"]),
                f"{r['last_five']:.2f}",
                f"{r['auc']:.2f}",
                f"{r['final']:.2f}",
                f"{r['env_steps_per_s']:.1f}",
                kept,
            ]
        )
    header = ["arm", "configuration", "seed", "last five", "AUC", "final (100 episodes)", "env steps/s", "kept"]
    if not with_kept:
        header, rows = header[:-1], [row[:-1] for row in rows]
    return list_table(header, rows)


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
    runs = tuning_runs()
    if runs:
        out["claims_tuning.inc"] = tuning_table(runs)
    for folder, name in ((CANDIDATES_TUNING, "candidates_tuning"), (CANDIDATES_FIRST_ATTEMPT, "candidates_first_attempt")):
        second = tuning_runs(folder) if os.path.isdir(folder) else []
        if second:
            out[f"claims_{name}.inc"] = tuning_table(second, with_kept=folder == CANDIDATES_TUNING)
        elif folder == CANDIDATES_TUNING:
            out[f"claims_{name}.inc"] = "No tuning run of this wave is collected yet.\n"
    return out


if __name__ == "__main__":
    for path in write_includes(tables(), os.path.join(ROOT, "docs")):
        print("wrote", os.path.relpath(path, ROOT))
