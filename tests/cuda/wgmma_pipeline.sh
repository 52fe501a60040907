#!/usr/bin/env bash
# The mixed solve's wgmma chains stay asynchronous: compiles the kernels that issue wgmma (chunk_fwd, chunk_bwd, and
# the backward's step_b2_wg, step_d_wg; not states_wg: its comment says why)
# for sm_90a with ptxas's report, and fails where ptxas serializes them (C7511: too few registers for the
# pipeline; C7519: an injected warpgroup.arrive, e.g. for a branch inside a chain). Serialized chains run the
# mixed forward ~10 % slower with no other symptom (bench/RESULTS.md, v7), so CI checks it without a GPU.
# Usage: wgmma_pipeline.sh NVCC SOURCE_DIR
set -euo pipefail
nvcc="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for f in chunk_fwd chunk_bwd step_b2_wg step_d_wg; do
  if ! "$nvcc" -DGKA_HAVE_SM90A=1 -DGKA_WITH_CUDA=1 -I"$src/include" -I"$src/src" -O3 -DNDEBUG -std=c++20 \
      --expt-relaxed-constexpr --generate-code=arch=compute_90a,code=sm_90a -Xptxas -v -cubin \
      -o "$tmp/$f.cubin" "$src/src/cuda/$f.cu" >"$tmp/$f.log" 2>&1; then
    cat "$tmp/$f.log"; exit 1
  fi
  # the report must cover the D = 128 kernels, or the check below proves nothing
  grep -q "Compiling entry function '_ZN3gka4cuda.*kernelILi128E" "$tmp/$f.log" ||
    { echo "$f: no sm_90a kernel in ptxas's report:"; tail -5 "$tmp/$f.log"; exit 1; }
  if grep -E "C7511|C7519|serialized|warpgroup.arrive is injected" "$tmp/$f.log"; then
    echo "$f: ptxas serializes wgmma (above)"; exit 1
  fi
  echo "$f: wgmma chains asynchronous; registers per D = 128 kernel:" $(awk '
    /Compiling entry function/ { k = ""; if (match($0, /[0-9]+[a-z_]+kernelILi128E/)) k = substr($0, RSTART, RLENGTH) }
    /Used [0-9]+ registers/ && k != "" { sub(/^[0-9]+/, "", k); sub(/ILi128E/, "", k); print k, $5; k = "" }' "$tmp/$f.log")
done
