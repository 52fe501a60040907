#!/usr/bin/env bash
# Builds the CPU benchmarks (Release) and prints the FMA peak and a compact table of the benchmarks.
# Usage: bench/run_cpu.sh [min_time_seconds] [extra Google Benchmark flags...]
#   BUILD_DIR (default: build-bench in the repo root), JOBS (default 2),
#   REPS (default 3): repetitions per benchmark; the table shows the fastest, because on a machine whose
#   cores are shared, slower repetitions measure the neighbours rather than libgka.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-bench}
min_time=${1:-0.2}
shift || true

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGKA_ENABLE_CUDA=OFF -DGKA_BUILD_TESTS=OFF \
  -DGKA_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target gka_fma_peak gka_bench_cpu >/dev/null

"$build/bench/gka_fma_peak"
echo

csv="$build/bench_cpu.csv"
log="$build/bench_cpu.log"
# Context (machine, the peak bench_cpu measured for its own % column) goes to stderr.
"$build/bench/gka_bench_cpu" --benchmark_min_time="$min_time" --benchmark_repetitions="${REPS:-3}" \
  --benchmark_format=csv "$@" >"$csv" 2>"$log"
grep -E 'fp32_fma_peak' "$log" || true

# Columns by header name, so new counters or reordered fields do not break the table.
awk -F, '
  NR == 1 { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); col[h] = i }; next }
  { name = $1; gsub(/"/, "", name) }
  name ~ /_(mean|median|stddev|cv)$/ { next }
  !(name in seen) { seen[name] = 1; order[++n] = name }
  $col["error_occurred"] == "true" { err[name] = $col["error_message"]; next }
  { unit = $col["time_unit"]; t = $col["real_time"]
    ms = unit == "ns" ? t / 1e6 : unit == "us" ? t / 1e3 : unit == "s" ? t * 1e3 : t
    if (!(name in best) || ms < best[name]) {
      best[name] = ms; tok[name] = $col["tok/s"]; gf[name] = $col["GFLOP/s"]; pk[name] = $col["%peak"] } }
  END {
    printf "%-7s %-13s %-5s %3s %10s %9s %9s %7s\n", "op", "shape", "dtype", "thr", "ms", "Mtok/s", "GFLOP/s", "%peak"
    for (i = 1; i <= n; i++) {
      split(order[i], p, "/")
      if (order[i] in best)
        printf "%-7s %-13s %-5s %3s %10.3f %9.4f %9.1f %7.1f\n", p[1], p[2], p[3], substr(p[4], 2), best[order[i]],
               tok[order[i]] / 1e6, gf[order[i]], pk[order[i]]
      else
        printf "%-7s %-13s %-5s %3s  error: %s\n", p[1], p[2], p[3], substr(p[4], 2), err[order[i]] } }
' "$csv"
