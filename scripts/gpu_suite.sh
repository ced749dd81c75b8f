#!/usr/bin/env bash
# The GPU machine's run: build with CUDA, run the whole test suite there (the CUDA tests run for real), then the
# whole-model throughput benchmark and a CPU-vs-GPU perplexity check on the organisms. Results (JSON + logs) go
# to $OUT (default ./results/gpu). Needs python3 with torch (and transformers for the oracle fixtures); on a machine
# where nothing can be installed, carry .carry (scripts/device_deps.sh).
#   scripts/gpu_suite.sh [build] [test] [cudatest] [bench] [eval] [calib]   (default: build test bench eval)
# cudatest: only the CUDA tests; calib: scripts/bench_calibrate_gpu.sh (CFZO / CFBP speed and memory on random
# published shapes) and scripts/bench_calibrate_organisms.sh (vanilla vs zo vs bp on the organisms; needs the
# train and test books in MX_BOOKS, default .carry/books, copied from ../shared/data/books).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/results/gpu}"
mkdir -p "$OUT"
steps="${*:-build test bench eval}"
export MX_BUILD_DIR="${MX_BUILD_DIR:-build-gpu}" MX_PYTHON="${MX_PYTHON:-python3}"
CLI="$MX_BUILD_DIR/mambaextend"
has() { [[ " $steps " == *" $1 "* ]]; }

if has build; then
  t0=$(date +%s)
  MX_JOBS="${MX_JOBS:-$(nproc)}" bash scripts/build.sh -DMAMBAEXTEND_CUDA=ON > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi
if has test; then
  (cd "$MX_BUILD_DIR" && timeout 420 ctest -j "$(nproc)" --timeout 400 > "$OUT/ctest.log" 2>&1)
  grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|\*\*\*" "$OUT/ctest.log" | tail -15
  grep -E "Cuda.*(Passed|Failed|Skipped)" "$OUT/ctest.log" | sed 's/ \.\.\.*/ /' > "$OUT/cuda_tests.log"
  echo "CUDA tests: $(grep -c Passed "$OUT/cuda_tests.log") passed, $(grep -c -E 'Failed|Skipped' "$OUT/cuda_tests.log") failed or skipped"
fi
if has cudatest; then
  (cd "$MX_BUILD_DIR" && timeout "${MX_CUDATEST_TIMEOUT:-300}" ctest -R Cuda -j 4 --timeout 250 --output-on-failure > "$OUT/ctest_cuda.log" 2>&1)
  grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)" "$OUT/ctest_cuda.log" | tail -15
fi
if has bench; then
  : > "$OUT/bench_model.jsonl"
  for shape in mamba-130m mamba-1.4b mamba-2.8b mamba2-130m mamba2-780m mamba2-2.7b; do
    timeout 240 "$CLI" --log-level warn bench --shape "$shape" --length 65536 --device cuda --dtype bf16 --repeat 3 \
      --out "$OUT/bench_$shape.json" || echo "bench $shape failed (exit $?)"
    [ -f "$OUT/bench_$shape.json" ] && tr -d '\n' < "$OUT/bench_$shape.json" >> "$OUT/bench_model.jsonl" && echo >> "$OUT/bench_model.jsonl"
    rm -f "$OUT/bench_$shape.json"
  done
fi
if has eval; then
  for m in mamba1 mamba2; do
    for dev in cpu cuda; do
      timeout 200 "$CLI" --log-level warn eval-ppl --model "assets/models/organism-$m-7m" \
        --tokenizer assets/tokenizers/gpt-neox-20b/tokenizer.json --data assets/books/validation \
        --protocol pg19 --windows-per-doc 1 --pred-len 100 --lengths 1024,8192 --device "$dev" \
        --out "$OUT/eval_${m}_$dev.json" > "$OUT/eval_${m}_$dev.txt" 2>&1 || echo "eval $m $dev failed"
      tail -4 "$OUT/eval_${m}_$dev.txt"
    done
  done
fi
if has calib; then
  BOOKS="${MX_BOOKS:-.carry/books}"
  MX_CLI="$CLI" MX_BENCH_DTYPE="${MX_BENCH_DTYPE:-bf16}" MX_BENCH_DATA="$BOOKS/train" MX_BENCH_WORK=/tmp/mx_calib_work \
    MX_BENCH_BP_SHAPES="${MX_BENCH_BP_SHAPES:-mamba-130m mamba-1.4b mamba2-130m}" \
    timeout "${MX_CALIB_BENCH_TIMEOUT:-240}" bash scripts/bench_calibrate_gpu.sh "$OUT/bench_calibrate_gpu.json" > "$OUT/bench_calibrate_gpu.txt" 2>&1 \
    || echo "bench_calibrate_gpu failed or timed out (exit $?)"
  MX_CLI="$CLI" MX_TRAIN="$BOOKS/train" MX_TEST="$BOOKS/test" MX_WORK=/tmp/mx_organisms_work \
    timeout "${MX_ORGANISMS_TIMEOUT:-300}" bash scripts/bench_calibrate_organisms.sh "$OUT/bench_calibrate_organisms.json" \
    || echo "bench_calibrate_organisms failed or timed out (exit $?)"
  mkdir -p "$OUT/calib_logs"
  cp /tmp/mx_calib_work/*.log /tmp/mx_calib_work/rows.jsonl /tmp/mx_organisms_work/*.log /tmp/mx_organisms_work/*.json "$OUT/calib_logs/" 2>/dev/null
fi
