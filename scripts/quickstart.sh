#!/usr/bin/env bash
# Installs what is missing, builds, checks the op against the fp64 oracle (gka-quickstart --quick), then runs
# the default `gka train`: a small MQAR comparison of GKA, Gated DeltaNet, GLA and attention on CPU
# (about 6-8 minutes on 2 cores), printing the final table. Extra arguments go to `gka train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release -DGKA_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target gka gka-quickstart
./build/release/apps/quickstart/gka-quickstart --quick
./build/release/apps/gka/gka train --out runs/quickstart "$@"
