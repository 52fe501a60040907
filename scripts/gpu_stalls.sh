#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): where one kernel's warps wait. Profiles the first launch of the kernels
# matching REGEX in the CUDA bench (Nsight Compute: SpeedOfLight, WarpStateStats, SourceCounters) and prints its
# duration, issue rate and DRAM use, the stall reasons over all samples, where the samples accumulate along the
# SASS (every 5 %), and each instruction holding 1.2 % of them with its top two reasons. Environment variables
# pass through to the bench (e.g. GKA_BENCH_ITERS=0 GKA_BENCH_PRECISION=mixed); SKIP=n profiles the n+1-th launch.
# KEEP=name copies the per-instruction table to $OUT/name.csv (for offline study next to scripts/sass_loops.sh).
# Usage: bash scripts/gpu_stalls.sh REGEX   e.g. bash scripts/gpu_stalls.sh states_bf16
source "$(dirname "$0")/gpu_setup.sh"
re=${1:?usage: gpu_stalls.sh KERNEL_REGEX}
bench=${BENCH:-$B/bench/gka_bench_cuda}  # BENCH: another build of the bench (e.g. gpu_ab.sh's build-old)
[ -x "$bench" ] || gpu_build gka_bench_cuda
T=$(mktemp -d)
GKA_BENCH_PARTS=${GKA_BENCH_PARTS:-chunk} ncu --section SpeedOfLight --section WarpStateStats --section SourceCounters \
  --import-source no -k "regex:$re" --launch-skip "${SKIP:-0}" -c 1 -o "$T/prof" "$bench" 1 >"$T/ncu.txt" 2>&1 ||
  { tail -20 "$T/ncu.txt"; exit 1; }
ncu --import "$T/prof.ncu-rep" --page details >"$T/details.txt" 2>&1
grep -E '^\s+(Duration|Issue Slots Busy|Warp Cycles Per Issued|DRAM Throughput|L2 Cache Throughput)' "$T/details.txt" |
  awk '{printf "%s %s %s; ", $1, $2, $NF} END {print ""}'
ncu --import "$T/prof.ncu-rep" --page source --csv --print-source sass >"$T/source.csv" 2>&1
[ -n "${KEEP:-}" ] && cp "$T/source.csv" "$OUT/$KEEP.csv"
python3 - "$T/source.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hi = next(i for i, r in enumerate(rows) if 'Source' in r)
hdr = rows[hi]
data = [r for r in rows[hi + 1:] if len(r) == len(hdr)]
def num(x):
    try:
        return float(x.replace(',', ''))
    except ValueError:
        return 0.0
src = hdr.index('Source')
key = next(i for i, h in enumerate(hdr) if h.startswith('Warp Stall Sampling (All'))
cols = [i for i, h in enumerate(hdr) if h.startswith('stall_') and 'Not Issued' not in h]
tot = sum(num(r[key]) for r in data) or 1.0
print(f'{tot:.0f} samples over {len(data)} SASS instructions')
reasons = sorted(((sum(num(r[i]) for r in data), hdr[i][6:]) for i in cols), reverse=True)[:10]
print('reasons: ' + ', '.join(f'{k} {v / tot:.1%}' for v, k in reasons))
acc, step = 0.0, tot / 20
nxt = step
for j, r in enumerate(data):
    acc += num(r[key])
    if acc >= nxt:
        print(f'  {acc / tot:4.0%} by #{j:5d} {r[src][:70]}')
        nxt += step
for j, r in enumerate(data):
    s = num(r[key])
    if s >= 0.012 * tot:
        top = sorted(((num(r[i]), hdr[i][6:]) for i in cols), reverse=True)[:2]
        print(f'  {s / tot:5.1%} #{j:5d} {r[src][:64]:64s} ' + ', '.join(f'{k} {v / s:.0%}' for v, k in top))
PY
rm -rf "$T"
