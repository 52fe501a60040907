#!/usr/bin/env bash
# The GPU machine has nvcc, cmake and PyTorch but not the Debian -dev packages we build with.
#   here:  bash scripts/gpu_deps.sh fetch    -> .gpu-deps/*.deb (git-ignored; pass it in the device call's carry)
#   there: eval "$(bash scripts/gpu_deps.sh unpack)"   -> unpacks to /tmp/gka-deps, exports CMAKE_PREFIX_PATH
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  fetch)
    mkdir -p .gpu-deps
    (cd .gpu-deps && apt-get download libeigen3-dev libgtest-dev nlohmann-json3-dev libbenchmark-dev libbenchmark1debian >/dev/null 2>&1)
    ls .gpu-deps ;;
  unpack)  # a no-op where the packages are installed normally (no .gpu-deps folder)
    shopt -s nullglob
    for f in .gpu-deps/*.deb; do dpkg -x "$f" /tmp/gka-deps; done
    echo "export CMAKE_PREFIX_PATH=/tmp/gka-deps/usr:/tmp/gka-deps/usr/share/eigen3/cmake\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
    echo "export CPATH=/tmp/gka-deps/usr/include/eigen3:/tmp/gka-deps/usr/include\${CPATH:+:\$CPATH}" ;;
  *) echo "usage: $0 fetch|unpack" >&2; exit 2 ;;
esac
