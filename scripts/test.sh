#!/usr/bin/env bash
# Installs what is missing, builds (Release, CUDA compiled where nvcc exists) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake --preset ci >/dev/null
cmake --build --preset ci
ctest --preset ci

# PyTorch package: install what is missing, build it against the installed torch, run the pytest suite
# (CUDA cases run when a GPU and the CUDA backend are present, and are skipped otherwise).
PY="${PYTHON:-python3}"
py_missing=()
for m in torch:torch numpy:numpy pytest:pytest scikit_build_core:scikit-build-core; do
  "$PY" -c "import ${m%%:*}" 2>/dev/null || py_missing+=("${m##*:}")
done
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "pip installing: ${py_missing[*]}"
  "$PY" -m pip install -q "${py_missing[@]}"
fi
"$PY" -m pip install -q --no-build-isolation --no-deps .
"$PY" -m pytest tests/python -q
