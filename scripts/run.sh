#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs the project with every extra, then
#   demo   runs the main job on its built-in default
#   test   runs lint (ruff), types (mypy), the test suite (pytest) and the docs build (Sphinx, -W)
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-demo}"
shift || true
venv=".venv"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
fi
# torch first and pinned: the 2.13.0 CPU wheel is available offline; an unpinned torch pulls a multi-GB CUDA build.
if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    "$py" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
"$py" -m pip install --quiet --disable-pip-version-check -e ".[all]"
# Meta-World 3.1.1 pins mujoco 3.3.0, but Fetch needs the project's 3.11.0; its v3 tasks and scripted policies run
# on 3.11.0 (tests/test_metaworld.py), so it goes in without its dependencies (the others are already here).
if ! "$py" -c "import metaworld" 2>/dev/null; then
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps "metaworld==3.1.1"
fi

case "$job" in
    demo)
        "$py" examples/keypoint_ot_demo.py
        "$py" examples/train_fetch.py --quick "$@"
        ;;
    test)
        "$venv/bin/ruff" check neural_ot otpr_sb3 tests examples docs benchmarks
        "$venv/bin/ruff" format --check neural_ot otpr_sb3 tests examples docs benchmarks
        "$venv/bin/mypy"
        "$py" -m pytest "$@"
        rm -rf docs/_build
        "$venv/bin/sphinx-build" -W --keep-going -q -b html docs docs/_build/html
        echo "docs built in docs/_build/html"
        ;;
    *)
        echo "usage: scripts/run.sh [demo|test] [extra args]" >&2
        exit 2
        ;;
esac
