#!/usr/bin/env bash
# Installs the Debian packages libgka builds with, if any is missing (no-op on a prepared machine).
# The `gka` command line also needs CLI11 (flags) and gnuplot (PNG plots); torch comes from pip (below).
set -euo pipefail
packages=(cmake g++ make libeigen3-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev ccache libcli11-dev gnuplot-nox libpng-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyTorch for the torch binding and the `gka` command line (the ci and release presets build both): the
# interpreter's torch is what CMake builds against (bindings/torch/CMakeLists.txt).
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "pip installing: torch"
  "$PY" -m pip install -q torch
fi
