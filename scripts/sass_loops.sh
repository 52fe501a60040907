#!/usr/bin/env bash
# Offline SASS study (no GPU needed): compiles one CUDA source of the backend for sm_90a, disassembles one kernel
# with cuobjdump (pip packages nvidia-cuda-cuobjdump and -nvdisasm, installed into ~/.cache/gka-tools on first use) and prints,
# for each loop that issues wgmma, its instruction count and opcode histogram. The mixed solve is issue-bound, so
# this count predicts its speed; check any change on a GPU (scripts/gpu_quick.sh) before it lands.
# Usage: bash scripts/sass_loops.sh [SOURCE [KERNEL_SUBSTRING]]   (default: src/cuda/chunk_fwd.cu, chunk_fwd_kernelILi128)
# GKA_SASS_OP=HMMA lists the loops that issue mma.sync instead (the fp32 solve, the products outside it).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-src/cuda/chunk_fwd.cu}; kern=${2:-chunk_fwd_kernelILi128}
tools="$HOME/.cache/gka-tools"
mkdir -p "$tools"
cuobjdump=$(find "$tools" -name cuobjdump -type f | head -1)
if [ -z "$cuobjdump" ]; then
  python3 -m pip install -q --target "$tools" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm >/dev/null 2>&1
  cuobjdump=$(find "$tools" -name cuobjdump -type f | head -1)
fi
[ -n "$cuobjdump" ] || { echo "cuobjdump: pip install of nvidia-cuda-cuobjdump failed"; exit 1; }
export PATH="$(dirname "$cuobjdump"):$PATH"  # cuobjdump runs nvdisasm from the same package set
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$nvcc" -DGKA_HAVE_SM90A=1 -DGKA_WITH_CUDA=1 -Iinclude -Isrc -O3 -DNDEBUG -std=c++20 --expt-relaxed-constexpr \
  --generate-code=arch=compute_90a,code=sm_90a -cubin -o "$tmp/k.cubin" "$src"
name=$("$cuobjdump" -symbols "$tmp/k.cubin" | grep -oE "_Z[A-Za-z0-9_]*$kern[A-Za-z0-9_]*" | head -1)
[ -n "$name" ] || { echo "no kernel matching $kern in $src"; exit 1; }
"$cuobjdump" -sass -fun "$name" "$tmp/k.cubin" >"$tmp/k.sass"
python3 - "$tmp/k.sass" "$name" <<'PY'
import os, re, sys
from collections import Counter
rows = [re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+([^;]*);', l) for l in open(sys.argv[1])]
rows = [(int(m.group(1), 16), m.group(2).strip()) for m in rows if m]
addr = {a: i for i, (a, _) in enumerate(rows)}
print(sys.argv[2], '-', len(rows), 'instructions')
loops = []
for i, (a, ins) in enumerate(rows):  # backward branches = loops
    m = re.search(r'BRA (?:\S+, )?(0x[0-9a-f]+)', ins)
    if m and int(m.group(1), 16) < a and int(m.group(1), 16) in addr:
        j = addr[int(m.group(1), 16)]
        body = [x for _, x in rows[j:i + 1]]
        if any(re.search(os.environ.get("GKA_SASS_OP", "GMMA"), x) for x in body):
            loops.append((j, i, body))
for j, i, body in loops:
    ops = Counter(re.sub(r'^@!?U?P\w+\s+', '', x).split()[0].split('.')[0] for x in body)
    print(f'loop {rows[j][0]:#x}-{rows[i][0]:#x}: {len(body)} instructions, {ops["HGMMA"]} HGMMA')
    print('  ' + ' '.join(f'{k} {v}' for k, v in ops.most_common(24)))
PY
