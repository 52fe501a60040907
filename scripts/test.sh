#!/usr/bin/env bash
# Installs what is missing, builds (Release, CUDA compiled where nvcc exists) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake --preset ci >/dev/null
cmake --build --preset ci
ctest --preset ci
