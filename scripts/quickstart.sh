#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: an accuracy check of the CPU backend against
# the fp64 oracle plus a short benchmark, printed as tables.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release -DGKA_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target gka-quickstart
./build/release/apps/quickstart/gka-quickstart "$@"
