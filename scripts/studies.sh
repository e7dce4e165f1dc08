#!/usr/bin/env bash
# The long studies behind the results pages (docs/claims.rst, docs/results.rst), each run from a clone of this
# repository at the commit all its runs share, with its runs outside the git tree. Finished runs already collected in
# results/ are skipped (the sweep's `collect_dir`); unfinished ones resume from their checkpoints.
#   bash scripts/studies.sh run NAME [NAME ...]   the studies one after the other, two runs at a time each
#   bash scripts/studies.sh collect NAME          copy its finished runs into results/ (then commit them)
#   bash scripts/studies.sh status NAME           where each of its runs stands (finished, started, pending)
#   bash scripts/studies.sh pages NAME            regenerate what its collected runs feed on the results pages
#                                                 (baselines-report, claims-candidates-a/-c, metaworld, robosuite,
#                                                 robosuite-lift), then run their tests
#   bash scripts/studies.sh prepare NAME          only write its clone and sweep file (what `run` would run)
#   bash scripts/studies.sh set-aside NAME KIND   move the runs of its seeds begun on another CPU kind out of the study:
#                                                 finished records to results/.../set_aside_KIND (then commit them),
#                                                 the rest and those seeds' pretrained checkpoints beside its runs
#   bash scripts/studies.sh list                  the studies, their commits and sweep files
# $STUDIES (default: ../studies) holds the clones, the runs and the datasets. $MAX_CONCURRENT, if set, replaces the
# sweep file's number of runs at a time (to run one study beside another). Run `bash scripts/run.sh demo` first: the
# studies use this checkout's .venv (robosuite: .venv-robosuite, from `bash scripts/run.sh robosuite`).
# A SIGINT (Ctrl-C, or `kill -INT -- -PGID` to the chain's process group) stops the running sweep (Ray saves its state)
# and the chain with it: the next study starts only when this one's runs have all finished or one of them failed.
# `kill -TERM -- -PGID` ends everything at once. (Chains started before this change go on after a SIGINT.)
# A study whose unfinished seeds have runs made on another CPU kind than this machine's is not run (exit 4): run it on
# that kind, or move those seeds' runs aside first (`otpr sweep FILE --check-cpu-kind` lists them, `set-aside` moves
# them).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
studies="${STUDIES:-$(dirname "$root")/studies}"
mix="--mix 50:0.1 50:1.0"

# NAME -> commit, sweep file, results folder, venv, and the arguments of `otpr record` for a dataset the sweep does not
# record itself (none: "-"). The sweep file is the clone's, at the study's commit, unless it is prefixed "main:" (this
# checkout's: the runs still come from the study's commit, with the runs that file lists).
study() {
    case "$1" in
        relaxed-report) echo "a9d796d examples/sweeps/claims_relaxed_report.toml results/claims/relaxed_report/runs .venv -" ;;
        claims-c) echo "8d4c5c5 examples/sweeps/claims_report_c.toml results/claims/report/runs .venv $mix" ;;
        claims-b) echo "8d4c5c5 examples/sweeps/claims_report_b.toml results/claims/report/runs .venv -" ;;
        claims-d) echo "8d4c5c5 examples/sweeps/claims_report_d.toml results/claims/report/runs .venv -" ;;
        claims-candidates-tuning) echo "194799c examples/sweeps/claims_candidates_tuning.toml results/claims/candidates_tuning/runs .venv -" ;;
        claims-candidates-ready-tuning) echo "8f2cf00 examples/sweeps/claims_candidates_tuning.toml results/claims/candidates_ready_tuning/runs .venv -" ;;
        claims-candidates-a) echo "cddd2d9 examples/sweeps/claims_candidates_report_a.toml results/claims/candidates_report/runs .venv -" ;;
        claims-candidates-c) echo "cddd2d9 examples/sweeps/claims_candidates_report_c.toml results/claims/candidates_report/runs .venv $mix" ;;
        relaxed-probe-c) echo "ce5495f examples/sweeps/claims_relaxed_probe_c.toml results/claims/relaxed_probe_c/runs .venv $mix" ;;
        baselines-tuning) echo "f1b616d examples/sweeps/baselines_tuning.toml results/baselines/tuning/runs .venv -" ;;
        baselines-report) echo "df1003a examples/sweeps/baselines_report.toml results/baselines/report/runs .venv -" ;;
        metaworld) echo "76abd7f main:examples/sweeps/metaworld.toml results/metaworld/runs .venv -" ;;
        robosuite) echo "76abd7f main:examples/sweeps/robosuite.toml results/robosuite/runs .venv-robosuite -" ;;
        robosuite-lift) echo "b94d94c main:examples/sweeps/robosuite_lift.toml results/robosuite/runs .venv-robosuite -" ;;
        *) echo "unknown study '$1'; see: bash scripts/studies.sh list" >&2; return 2 ;;
    esac
}
names="relaxed-report claims-c claims-b claims-d claims-candidates-tuning claims-candidates-ready-tuning claims-candidates-a claims-candidates-c relaxed-probe-c baselines-tuning baselines-report metaworld robosuite robosuite-lift"

# The clone at the study's commit and its sweep file with the runs, datasets and Ray storage under $studies.
prepare() {
    local name="$1" commit="$2" sweep="$3" results="$4" clone="$studies/clones/$2"
    mkdir -p "$studies/$name"
    if [ ! -d "$clone" ]; then
        git clone --quiet "$root" "$clone"
        git -C "$clone" checkout --quiet "$commit"
    fi
    sed -e "/^collect_dir = /d" \
        -e "s#^runs_dir = .*#runs_dir = \"$studies/$name/runs\"#" \
        -e "s#^data_path = .*#data_path = \"$studies/minari\"#" \
        -e "s#^storage = .*#storage = \"$studies/$name/ray\"\ncollect_dir = \"$root/$results\"#" \
        "$([ "${sweep#main:}" != "$sweep" ] && echo "$root/${sweep#main:}" || echo "$clone/$sweep")" > "$studies/$name/sweep.toml"
    if [ -n "${MAX_CONCURRENT:-}" ]; then
        sed -i "s#^max_concurrent = .*#max_concurrent = $MAX_CONCURRENT#" "$studies/$name/sweep.toml"
    fi
    # Each seed's longest run first, so that it fits in one session (scripts/sweep_first.py).
    if [ "$name" = "baselines-report" ]; then
        "$root/.venv/bin/python" "$root/scripts/sweep_first.py" "$studies/$name/sweep.toml" FetchPush-v4 rlpd-her
    fi
}

# The default demonstrations of every task of a sweep file, as its sweep would record them (existing ones are kept).
record_defaults='
import sys
from otpr_sb3.benchmark.recording import record
from otpr_sb3.benchmark.sweep import SweepConfig
config = SweepConfig.from_toml(sys.argv[1])
for env_id in sorted({run["env_id"] for run in config.runs if run.get("dataset") is None}):
    record(env_id, seed=0, data_path=config.data_path)
'

case "${1:-list}" in
    list)
        for name in $names; do echo "$name: $(study "$name")"; done
        ;;
    run)
        shift
        for name in "$@"; do study "$name" > /dev/null; done  # every name checked before the first runs
        for name in "$@"; do
            read -r commit sweep results venv record <<< "$(study "$name")"
            prepare "$name" "$commit" "$sweep" "$results"
            clone="$studies/clones/$commit"
            export PYTHONPATH="$clone" OMP_NUM_THREADS=1
            # Datasets first, by the clone's code, one chain at a time: two chains sharing $studies/minari raced to
            # record the same default dataset (2026-12-06), and the losing sweep stopped its chain ("already exists").
            lock="$studies/.record.lock"
            if [ "$record" != "-" ]; then  # an existing dataset is kept (record refuses to overwrite it)
                (cd "$clone" && flock "$lock" "$root/$venv/bin/python" -m otpr_sb3.benchmark.cli record \
                    --env FetchPickAndPlace-v4 $record --data-path "$studies/minari") >> "$studies/$name/record.log" 2>&1 || true
            fi
            (cd "$clone" && flock "$lock" "$root/$venv/bin/python" -c "$record_defaults" "$studies/$name/sweep.toml") \
                >> "$studies/$name/record.log" 2>&1 || true
            # Every method of a seed on one CPU kind: a seed begun on another kind would be finished here. (This
            # checkout's code reads the run directories; CPU_KIND_CHECK=0 skips it.)
            if [ "${CPU_KIND_CHECK:-1}" != 0 ] && ! PYTHONPATH="$root" "$root/$venv/bin/python" -m otpr_sb3.benchmark.cli \
                sweep "$studies/$name/sweep.toml" --check-cpu-kind; then
                echo "$(date -u +%FT%TZ) $name: seeds begun on another CPU kind (above); the chain stops here" \
                    "(run it on that kind, or: bash scripts/studies.sh set-aside $name KIND)"
                exit 4
            fi
            echo "$(date -u +%FT%TZ) $name: sweep from $clone"
            status=0
            (cd "$clone" && "$root/$venv/bin/python" -m otpr_sb3.benchmark.cli sweep "$studies/$name/sweep.toml") \
                >> "$studies/$name/sweep.log" 2>&1 || status=$?
            # The next study starts when this one's runs have all finished, or when a run failed (status 1). Runs left
            # otherwise were stopped (an interruption): `otpr sweep` exits 130 then, and 0 in clones of commits before
            # b2062f1, so the run directories decide (read by this checkout's code: `--status --exit-code`).
            left=0
            counts="$(PYTHONPATH="$root" "$root/$venv/bin/python" -m otpr_sb3.benchmark.cli sweep \
                "$studies/$name/sweep.toml" --status --exit-code)" || left=$?
            counts="$(tail -n 1 <<< "$counts")"
            if [ "$status" != 1 ] && [ "$left" != 0 ]; then
                echo "$(date -u +%FT%TZ) $name: runs left ($counts); the chain stops here (run it again to resume)"
                exit 130
            elif [ "$status" != 0 ]; then
                echo "$(date -u +%FT%TZ) $name: the sweep failed (see its sweep.log); the chain goes on"
            fi
        done
        ;;
    prepare)
        read -r commit sweep results venv record <<< "$(study "$2")"
        prepare "$2" "$commit" "$sweep" "$results"
        echo "$studies/$2/sweep.toml"
        ;;
    set-aside)
        read -r commit sweep results venv record <<< "$(study "$2")"
        if [ -z "${3:-}" ]; then
            echo "usage: bash scripts/studies.sh set-aside NAME KIND (the records go to $(dirname "$results")/set_aside_KIND)" >&2
            exit 2
        fi
        prepare "$2" "$commit" "$sweep" "$results"
        PYTHONPATH="$root" "$root/$venv/bin/python" -m otpr_sb3.benchmark.cli sweep "$studies/$2/sweep.toml" \
            --set-aside "$root/$(dirname "$results")/set_aside_$3"
        ;;
    collect)
        read -r commit sweep results venv record <<< "$(study "$2")"
        "$venv/bin/otpr" report --runs-dir "$studies/$2/runs" --collect "$results"
        ;;
    pages)
        study "$2" > /dev/null
        py=".venv/bin/python"
        export OMP_NUM_THREADS=1
        case "$2" in
            baselines-report) ;;
            claims-candidates-a|claims-candidates-c)  # the second wave's report: its tables, curves and verdicts
                "$py" examples/claims/claims_verdicts.py --wave candidates
                "$py" -m pytest -q tests/test_claims_page.py
                exit ;;
            metaworld|robosuite|robosuite-lift)  # "Beyond Fetch": the family's tables and every new task's verdicts
                family="${2%-lift}"
                .venv/bin/otpr report --runs-dir "results/$family/runs" --out "docs/results/$family"
                "$py" examples/benchmarks/beyond_fetch_verdicts.py
                "$py" -m pytest -q tests/test_results_page.py tests/test_beyond_fetch_page.py
                exit ;;
            *)
                echo "no pages step for '$2' (baselines-report, claims-candidates-a and -c, metaworld, robosuite and" \
                    "robosuite-lift only); see docs/results.rst and docs/claims.rst" >&2
                exit 2 ;;
        esac
        "$py" examples/benchmarks/baselines_verdicts.py
        .venv/bin/otpr report --runs-dir results/baselines/report/runs --out docs/results/baselines
        # the final models are in the study's runs directory, outside git
        for task in FetchPickAndPlace-v4 FetchPush-v4; do
            "$py" examples/benchmarks/baselines_failures.py --runs-dir "$studies/$2/runs" --task "$task"
            "$py" examples/benchmarks/baselines_failures.py --table --task "$task"
        done
        for task in FetchPickAndPlace:baselines_method_cost FetchPush:baselines_method_cost_push; do
            "$py" examples/benchmarks/bench_method_cost.py --table "docs/data/method_cost/${task%%:*}.json" \
                > "docs/${task#*:}.inc"
        done
        "$py" -m pytest -q tests/test_results_page.py
        ;;
    status)
        read -r commit sweep results venv record <<< "$(study "$2")"
        "$venv/bin/otpr" sweep "$studies/$2/sweep.toml" --status
        ;;
    *)
        echo "usage: bash scripts/studies.sh {list | run NAME [NAME ...] | prepare NAME | collect NAME | status NAME | pages NAME}" >&2
        exit 2
        ;;
esac; exit  # on the line bash parses with the case: a running chain then reads nothing of a later edit
