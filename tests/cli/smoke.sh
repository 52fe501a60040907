#!/usr/bin/env bash
# Smoke tests of the `gka` command line, a few steps each: bash smoke.sh GKA_BINARY WORKDIR CASE
set -euo pipefail
gka="$1"; work="$2"; case_="$3"
rm -rf "$work/$case_"; mkdir -p "$work/$case_"; cd "$work/$case_"
tiny=(--width 16 --heads 2 --layers 1 --batch 4 --threads 1 --quiet)
mqar=(--seq-len 32 --pairs 4 --vocab 32 --eval-examples 8)
expect_fail() {  # expect_fail REGEX CMD...: the command must fail and print REGEX
  local re="$1"; shift
  if "$@" >out.txt 2>&1; then echo "expected failure: $*"; exit 1; fi
  grep -Eq "$re" out.txt || { echo "missing '$re' in:"; cat out.txt; exit 1; }
}
case "$case_" in
  help)
    "$gka" --help | grep -q train
    for s in train sweep generate; do "$gka" "$s" --help >/dev/null; done ;;
  train)  # every mixer, metrics, checkpoint, results and table
    "$gka" train "${tiny[@]}" "${mqar[@]}" --steps 4 --eval-every 2 --out out
    for m in gka gdn gla attention; do
      test -s out/mqar-$m-s0/checkpoint.safetensors
      test -s out/mqar-$m-s0/config.json
      test "$(wc -l < out/mqar-$m-s0/metrics.jsonl)" -eq 4
    done
    test -s out/results.csv && test -s out/results.json && grep -q "| gka" out/table.md ;;
  resume)  # stop after 3 of 6 steps, resume: identical to an uninterrupted run
    args=(train "${tiny[@]}" "${mqar[@]}" --mixer gka,gdn --steps 6 --eval-every 3)
    "$gka" "${args[@]}" --out full
    "$gka" "${args[@]}" --out part --stop-after 3
    "$gka" "${args[@]}" --out part --resume
    cut -d, -f1-13 full/results.csv > a.csv; cut -d, -f1-13 part/results.csv > b.csv
    diff a.csv b.csv
    expect_fail "configuration differs" "$gka" train "${tiny[@]}" "${mqar[@]}" --mixer gka --steps 7 --eval-every 3 --out part --resume ;;
  lm_generate)  # lm training on a small corpus, then decode through the cache
    head -c 20000 /usr/share/common-licenses/GPL-3 > corpus.txt
    "$gka" train "${tiny[@]}" --task lm --corpus corpus.txt --seq-len 32 --steps 3 --eval-every 3 --mixer gka --out lm
    "$gka" generate lm/lm-gka-s0/checkpoint.safetensors --tokens 40 --threads 1 --quiet > gen.txt
    test "$(wc -c < gen.txt)" -ge 40
    "$gka" generate lm/lm-gka-s0/checkpoint.safetensors --tokens 300 --measure-memory --out mem --quiet > /dev/null
    test -s mem/memory.json ;;
  sweep)
    "$gka" sweep "${tiny[@]}" --pairs 4 --vocab 32 --eval-examples 8 --steps 2 --eval-every 2 --mixer gka,gla \
      --seq-lens 16,32 --widths 16 --out sw > sweep.txt
    grep -q "T=32" sweep.txt && test -s sw/sweep.csv ;;
  sweep_jobs)  # parallel child processes give the serial table; replot from the csv; time limit; pairs per length
    args=(sweep "${tiny[@]}" --vocab 32 --eval-examples 8 --eval-every 2 --mixer gdn,gla --seq-lens 16,32
          --widths 16 --seeds 2 --tokens-per-pair 8)
    "$gka" "${args[@]}" --steps 2 --out serial > serial.txt
    "$gka" "${args[@]}" --steps 2 --out par --jobs 3 > par.txt
    cut -d, -f1-9 serial/sweep.csv > a.csv; cut -d, -f1-9 par/sweep.csv > b.csv
    diff a.csv b.csv
    grep -q "T=32 (4 pairs)" par/table.md && test -s par/w16-T32/gdn-s1/log.txt
    "$gka" sweep --from-csv par/sweep.csv --out replot > replot.txt
    grep -q "T=16 (2 pairs)" replot/table.md
    "$gka" "${args[@]}" --steps 50000 --out cut --jobs 2 --time-limit 2 > cut.txt
    grep -q "time-limit 2 s reached" cut.txt && grep -q "—" cut/table.md ;;
  errors)  # clear messages for bad flags, unreadable files and corrupt checkpoints
    expect_fail "mixer" "$gka" train --mixer transformer
    expect_fail "seq-len|pairs" "$gka" train "${tiny[@]}" --seq-len 8 --pairs 4 --steps 1
    expect_fail "cannot read corpus" "$gka" train --task lm --corpus /nonexistent/file.txt
    printf 'garbage that is not a checkpoint' > bad.safetensors
    expect_fail "corrupt checkpoint" "$gka" generate bad.safetensors
    expect_fail "File does not exist|not exist" "$gka" generate missing.safetensors
    expect_fail "steps: .*many" "$gka" train --steps many
    expect_fail "head dim 64 or 128" "$gka" train "${tiny[@]}" --device cuda --mixer gka --steps 1
    expect_fail "not a multiple of the head dim" "$gka" sweep --device cuda --widths 96 --steps 1 ;;
  *) echo "unknown case $case_"; exit 2 ;;
esac
echo "ok: $case_"
