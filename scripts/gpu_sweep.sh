#!/usr/bin/env bash
# The MQAR sweep of the issue on the GPU machine: build the gka command line with CUDA, then
#   gka sweep --device cuda  over  seq lens 256,512,1024,2048 x widths 64,128,256 x mixers gka,gdn,gla,attention
# (48 runs, 1 seed) in parallel child processes, within BUDGET_S seconds of wall time from the start of this
# script (build included). Results: $OUT/{sweep.csv,table.md,accuracy_vs_seq_len.png}, logs $OUT/{build,sweep}.log.
#
#   here, once:    bash scripts/gpu_deps.sh fetch && bash scripts/gpu_sweep.sh fetch   # CLI11 joins .gpu-deps
#   GPU machine:   bash scripts/gpu_sweep.sh              # full sweep, ~7 min (carry .gpu-deps)
#                  SMOKE=1 bash scripts/gpu_sweep.sh      # build (+ test_cli_models, run: cuda vs cpu) and
#                                                         # the 1-minute calibration pass only
#   knobs:         STEPS (default: auto, see below), BATCH=32, JOBS=8, TOKENS_PER_PAIR=16, BUDGET_S=420,
#                  RESUME=1 (with a fixed STEPS: continue the runs of an earlier call, e.g. on a warm machine);
#                  for dry runs elsewhere: GKA=path/to/gka (no build), DEVICE=cpu, SEQ_LENS, WIDTHS, MIXERS,
#                  RUNS_DIR (default runs: runs/gpu_sweep_cal, runs/gpu_sweep; kept on a warm machine)
#
# The choices, and why:
# - Task: Zoology-style MQAR with pairs growing with the length, one key-value pair per TOKENS_PER_PAIR = 16
#   tokens (Zoology's 64 -> 4, 128 -> 8, 256 -> 16): 16, 32, 64, 128 pairs at T = 256 ... 2048, vocabulary
#   512 (>= 2 x 128 pairs + 2; keys from the lower half, values from the upper). TOKENS_PER_PAIR=8 gives the
#   denser T/8 (vocabulary 1024). Pairs per length are in the table header.
# - Heads: gka's CUDA kernel has head dim 64 (and 128), so every mixer gets heads = width / 64 (1, 2, 4).
# - Parallelism: JOBS = 8 child processes with 1 CPU thread each on the 16 cores. At these sizes one process
#   is launch-bound (CPU side: 3,000-12,000 ATen ops per training step, measured on the CPU build: attention
#   ~3.1k, gka ~4.3k, gla ~4-6k, gdn ~5k at T = 256 and ~12k at T = 2048 with its 32-chunk state loop), so
#   several processes are needed to keep one GPU busy; 8 leaves cores for the driver and the parent.
# - Steps: the GPU time per step goes from launch-bound (~5-15 ms at T = 256) to FLOP-bound at T = 2048,
#   width 256 (batch 32: ~0.6 TFLOP of fp32 GEMMs, ~0.5 TFLOP of attention, the gka solve ~0.6 TFLOP of
#   3xTF32 per step: tens of ms). Summed over the 48 runs that is roughly 0.7-1 s of GPU per step of every run,
#   so the ~4 min left after the build allow only a few hundred steps each; the estimate is uncertain by 2x.
#   Hence STEPS=auto measures instead: a calibration pass trains every grid point for 20 steps (the same 8
#   processes, so the same contention), takes the time per step from metrics.jsonl (steps 5-19, after the
#   warm-up), and picks the largest STEPS (multiple of 25) whose projected wall time fits what is left of
#   BUDGET_S, with 25 % margin (the calibration runs overlap with other runs' start-up, which
#   flatters their step times). The main pass also runs under `gka sweep --time-limit`, so it ends in time
#   regardless (unfinished runs show as '—'). Evaluation: at STEPS/2 and STEPS, 256 sequences.
#   A few hundred steps are far below what MQAR needs at T = 2048 (Zoology trains for tens of thousands):
#   read the table as a first look; longer sweeps: STEPS=2000 RESUME=1 over several calls.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == fetch ]]; then  # here, not on the GPU machine: the gka CLI also needs CLI11
  mkdir -p .gpu-deps && (cd .gpu-deps && apt-get download libcli11-dev >/dev/null) && ls .gpu-deps
  exit $?
fi
OUT=${OUT:-/tmp/gka-out}
mkdir -p "$OUT"
SMOKE=${SMOKE:-0} STEPS=${STEPS:-auto} BATCH=${BATCH:-32} JOBS=${JOBS:-8} TOKENS_PER_PAIR=${TOKENS_PER_PAIR:-16}
BUDGET_S=${BUDGET_S:-420} RESUME=${RESUME:-0}
[[ "$RESUME" == 1 && "$STEPS" == auto ]] && { echo "RESUME=1 needs a fixed STEPS (the runs' configuration)"; exit 2; }
SEQ_LENS=${SEQ_LENS:-256,512,1024,2048} WIDTHS=${WIDTHS:-64,128,256} MIXERS=${MIXERS:-gka,gdn,gla,attention}
DEVICE=${DEVICE:-cuda} GKA=${GKA:-} RUNS_DIR=${RUNS_DIR:-runs}
nruns=$(( $(tr ',' '\n' <<<"$SEQ_LENS" | wc -l) * $(tr ',' '\n' <<<"$WIDTHS" | wc -l) * $(tr ',' '\n' <<<"$MIXERS" | wc -l) ))
CAL_STEPS=20
t0=$SECONDS
say() { printf '[gpu_sweep %4ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { say "FAILED: $*"; exit 1; }

# Vocabulary: the smallest power of two >= 2 x (pairs at the longest length) + 2, at least 128.
max_pairs=$(( $(tr ',' '\n' <<<"$SEQ_LENS" | sort -n | tail -1) / TOKENS_PER_PAIR )); VOCAB=128
while ((VOCAB < 2 * max_pairs + 2)); do VOCAB=$((VOCAB * 2)); done

if [[ "$DEVICE" == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || fail "no GPU (nvidia-smi)"
fi
if [[ -n "$GKA" ]]; then
  gka=$GKA
else
  # Build: the system compiler for everything that includes torch (see scripts/gpu_check.sh); only the gka target.
  eval "$(bash scripts/gpu_deps.sh unpack)"
  [[ -f /tmp/gka-deps/usr/share/cmake/CLI11/CLI11Config.cmake || -d /usr/include/CLI ]] ||
    fail "CLI11 missing: run 'bash scripts/gpu_sweep.sh fetch' on the dev machine and carry .gpu-deps"
  say "build (log $OUT/build.log)"
  export CXX=/usr/bin/g++ CC=/usr/bin/gcc CUDAHOSTCXX=/usr/bin/g++
  targets=(gka); [[ "$SMOKE" == 1 ]] && targets+=(test_cli_models)
  { cmake -S . -B build-gpu-cli -G Ninja -DCMAKE_BUILD_TYPE=Release -DGKA_BUILD_TORCH=ON -DGKA_BUILD_APPS=ON \
      -DGKA_BUILD_TESTS=ON -DGKA_BUILD_BENCH=OFF -DGKA_ENABLE_CUDA=ON &&
    cmake --build build-gpu-cli --target "${targets[@]}" -j16; } >"$OUT/build.log" 2>&1 ||
    { tail -40 "$OUT/build.log"; fail "build"; }
  gka=build-gpu-cli/apps/gka/gka
  if [[ "$SMOKE" == 1 ]]; then  # every mixer on cuda == on the cpu, and the chunked GDN == its recurrence
    build-gpu-cli/tests/cli/test_cli_models --gtest_filter='Cuda.*:*GdnChunked*:MixerDecode*' >>"$OUT/sweep.log" 2>&1 &&
      say "test_cli_models (cuda vs cpu, chunked GDN, decode): passed" ||
      { grep -E "Failure|FAILED|error" "$OUT/sweep.log" | head -20; say "test_cli_models: FAILED (see $OUT/sweep.log)"; }
  fi
fi
say "gka: $gka"

common=(--device "$DEVICE" --mixer "$MIXERS" --seq-lens "$SEQ_LENS" --widths "$WIDTHS" --tokens-per-pair "$TOKENS_PER_PAIR"
        --vocab "$VOCAB" --batch "$BATCH" --jobs "$JOBS" --threads 1 --quiet)
key="$SEQ_LENS $WIDTHS $MIXERS B$BATCH J$JOBS P$TOKENS_PER_PAIR V$VOCAB"
cal=$RUNS_DIR/gpu_sweep_cal

# Calibration: every grid point for CAL_STEPS steps; per-step times from metrics.jsonl (time_s of steps 5 and 19).
calibrate() {
  say "calibration: $nruns runs x $CAL_STEPS steps, $JOBS at a time (log $OUT/sweep.log)"
  local c0=$SECONDS
  rm -rf "$cal"
  "$gka" sweep "${common[@]}" --steps $CAL_STEPS --eval-every $CAL_STEPS --eval-examples 32 --time-limit 240 \
    --out "$cal" >>"$OUT/sweep.log" 2>&1 || { grep -A8 -E "FAILED|exit [0-9]|error" "$OUT/sweep.log" | head -40
                                               say "calibration: some runs failed (above; $OUT/sweep.log)"; }
  local wall=$((SECONDS - c0))
  python3 - "$cal" "$wall" "$JOBS" "$key" >"$cal/calibration.txt" <<'EOF' || fail "calibration: reading metrics"
import glob, json, sys
cal, wall, jobs, key = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
per_step, loop, total = [], 0.0, 0
for path in sorted(glob.glob(cal + "/w*-T*/*/metrics.jsonl")):
    total += 1
    t = {j["step"]: j["time_s"] for j in map(json.loads, open(path))}
    if 5 in t and 19 in t:  # a run that got through the calibration
        per_step.append((t[19] - t[5]) / 14)
        loop += max(t.values())
n = len(per_step)
if n == 0: sys.exit("no run finished the calibration")
overhead = max(0.0, (wall * jobs - loop) / n)  # process start, CUDA init, first steps, checkpoint: per run
print(key)
print(f"{sum(per_step) * total / n:.4f} {overhead:.2f} {total}")  # failed runs counted at the mean
EOF
  say "calibration done in ${wall}s: $(sed -n 2p "$cal/calibration.txt") (sum of s/step over runs, s overhead/run, runs)"
  cat "$cal/table.md" >>"$OUT/sweep.log"
}

if [[ "$STEPS" == auto || "$SMOKE" == 1 ]]; then
  if [[ "$SMOKE" != 1 && -f "$cal/calibration.txt" && "$(head -1 "$cal/calibration.txt")" == "$key" ]]; then
    say "reusing the calibration in $cal (same grid, batch, jobs)"
  else
    calibrate
  fi
  read -r sum_step overhead _ < <(sed -n 2p "$cal/calibration.txt")
fi
if [[ "$STEPS" == auto ]]; then
  left=$((BUDGET_S - (SECONDS - t0) - 25))  # 25 s for the outputs and start-up slack
  STEPS=$(python3 -c "
s = (($left * $JOBS - $nruns * ($overhead + 2)) / ($sum_step * 1.25)) - 6   # 6 steps' worth of evaluation
print(max(50, min(5000, int(s) // 25 * 25)))")
  say "auto STEPS=$STEPS: fits ${left}s with $JOBS jobs (per-step sum ${sum_step}s, ${overhead}s per run)"
fi
if [[ "$SMOKE" == 1 ]]; then
  say "SMOKE=1: a full run now would use STEPS=$STEPS (BUDGET_S=$BUDGET_S from the start, build included)"
  cp "$cal/sweep.csv" "$OUT/sweep.csv"; cp "$cal/table.md" "$OUT/table.md"
  cat "$OUT/table.md"; exit 0
fi

runs=$RUNS_DIR/gpu_sweep
resume=()
if [[ "$RESUME" == 1 ]]; then resume=(--resume); else rm -rf "$runs"; fi
limit=$((BUDGET_S - (SECONDS - t0) - 20))
((limit > 30)) || fail "no time left for the sweep (BUDGET_S=$BUDGET_S)"
say "sweep: $nruns runs x $STEPS steps, batch $BATCH, pairs = T/$TOKENS_PER_PAIR, vocab $VOCAB, time limit ${limit}s"
"$gka" sweep "${common[@]}" --steps "$STEPS" --eval-every $(((STEPS + 1) / 2)) --eval-examples 256 \
  --time-limit "$limit" --out "$runs" "${resume[@]}" 2>&1 | tee -a "$OUT/sweep.log" | grep -E "^\[|runs|limit|error"
rc=${PIPESTATUS[0]}
for f in sweep.csv table.md accuracy_vs_seq_len.png; do [[ -f "$runs/$f" ]] && cp "$runs/$f" "$OUT/"; done
if [[ ! -f "$OUT/accuracy_vs_seq_len.png" && -f "$OUT/sweep.csv" ]]; then  # no gnuplot here: try matplotlib
  python3 - "$OUT" <<'EOF' 2>/dev/null || say "no gnuplot or matplotlib: make the PNG elsewhere with gka sweep --from-csv sweep.csv"
import csv, sys, collections
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1] + "/sweep.csv")))
lines = collections.defaultdict(dict)
for r in rows:
    if r["accuracy"] not in ("nan", ""): lines[(r["mixer"], int(r["d_model"]))][int(r["seq_len"])] = float(r["accuracy"])
for (m, w), pts in lines.items():
    xs = sorted(pts); plt.plot(xs, [pts[x] for x in xs], marker="o", label=f"{m} d={w}")
plt.xscale("log", base=2); plt.xlabel("sequence length"); plt.ylabel("accuracy"); plt.grid(True)
plt.title("MQAR accuracy vs sequence length"); plt.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
plt.savefig(sys.argv[1] + "/accuracy_vs_seq_len.png", dpi=110, bbox_inches="tight")
EOF
fi
say "sweep exit $rc; STEPS=$STEPS, batch $BATCH, $JOBS jobs, pairs = T/$TOKENS_PER_PAIR, vocab $VOCAB"
[[ -f "$OUT/table.md" ]] && cat "$OUT/table.md"
ls "$OUT"
exit "$rc"
