#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs the project with every extra, then
#   demo       runs the main job on its built-in default
#   test       runs lint (ruff), types (mypy), the test suite (pytest) and the docs build (Sphinx, -W), and the robosuite
#              tests in .venv-robosuite
#   robosuite  sets up .venv-robosuite (robosuite's mujoco 3.3.0) and runs the command given in it, e.g.
#              bash scripts/run.sh robosuite otpr record --env RobosuiteLift-v2
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-demo}"
shift || true
venv=".venv"
py="$venv/bin/python"

# A venv with torch first and pinned: the 2.13.0 CPU wheel is available offline; an unpinned torch pulls a multi-GB
# CUDA build.
venv_with_torch() {
    if [ ! -x "$1/bin/python" ]; then
        python3 -m venv "$1"
    fi
    if ! "$1/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
        "$1/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
    fi
}

setup_main() {
    venv_with_torch "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check -e ".[all]"
    # Meta-World 3.1.1 pins mujoco 3.3.0, but Fetch needs the project's 3.11.0; its v3 tasks and scripted policies
    # run on 3.11.0 (tests/test_metaworld.py), so it goes in without its dependencies (the others are already here).
    if ! "$py" -c "import metaworld" 2>/dev/null; then
        "$py" -m pip install --quiet --disable-pip-version-check --no-deps "metaworld==3.1.1"
    fi
}

# robosuite needs mujoco 3.3.0 (Fetch's results are on 3.11.0): its own venv, with robosuite and mink installed
# without their dependencies (mink pins numpy < 2, minari needs numpy >= 2; see pyproject.toml).
setup_robosuite() {
    local rv=".venv-robosuite"
    venv_with_torch "$rv"
    "$rv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[robosuite]"
    if ! "$rv/bin/python" -c "import robosuite" 2>/dev/null; then
        "$rv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "robosuite==1.5.2" "mink==0.0.5"
    fi
}

case "$job" in
    robosuite)
        setup_robosuite
        if [ "$#" -gt 0 ]; then
            PATH="$PWD/.venv-robosuite/bin:$PATH" "$@"
        fi
        ;;
    demo)
        setup_main
        "$py" examples/keypoint_ot_demo.py
        "$py" examples/train_fetch.py --quick "$@"
        ;;
    test)
        setup_main
        "$venv/bin/ruff" check neural_ot otpr_sb3 tests examples docs benchmarks
        "$venv/bin/ruff" format --check neural_ot otpr_sb3 tests examples docs benchmarks
        "$venv/bin/mypy"
        "$py" -m pytest "$@"
        setup_robosuite
        .venv-robosuite/bin/python -m pytest tests/test_robosuite.py
        rm -rf docs/_build
        "$venv/bin/sphinx-build" -W --keep-going -q -b html docs docs/_build/html
        echo "docs built in docs/_build/html"
        ;;
    *)
        echo "usage: scripts/run.sh [demo|test|robosuite] [extra args]" >&2
        exit 2
        ;;
esac
