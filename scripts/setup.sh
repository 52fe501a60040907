#!/usr/bin/env bash
# Installs the Debian packages libgka builds with, if any is missing (no-op on a prepared machine).
set -euo pipefail
packages=(cmake g++ make libeigen3-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev ccache)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
