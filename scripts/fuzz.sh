#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, -DMAMBAEXTEND_FUZZ=ON) into build-fuzz/ (or
# $MX_FUZZ_BUILD_DIR), writes their seed corpora (scripts/fuzz_seeds.py: from ../shared, else assets/) and runs
# each target for $MX_FUZZ_SECONDS seconds (default 30; CI uses the default), $MX_FUZZ_JOBS targets at a time
# (default 2), under nice. Arguments: the targets to run (default: all). A crash, leak, timeout or out-of-memory
# fails the script; the reproducer is left in <build>/artifacts/. The working corpora in <build>/corpus/ grow from
# run to run; a table of executions, exec/s and corpus size is printed at the end and written to
# <build>/fuzz-summary.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${MX_FUZZ_BUILD_DIR:-build-fuzz}"
SECONDS_PER_TARGET="${MX_FUZZ_SECONDS:-30}"
JOBS="${MX_FUZZ_JOBS:-2}"
ALL=(fuzz_safetensors_header fuzz_safetensors_index fuzz_pickle fuzz_config_json fuzz_tokenizer_json fuzz_jsonl
     fuzz_factors)
TARGETS=("${@:-${ALL[@]}}")
[ $# -gt 0 ] || TARGETS=("${ALL[@]}")

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (scripts/setup.sh installs it)" >&2; exit 1; }
PY="${MX_PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
TORCH_PREFIX="$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DMAMBAEXTEND_FUZZ=ON -DMAMBAEXTEND_TESTS=OFF -DMAMBAEXTEND_CUDA=OFF \
    >/dev/null
fi
nice cmake --build "$BUILD_DIR" --target "${TARGETS[@]}" --parallel "${MX_JOBS:-$(nproc)}"
rm -rf "$BUILD_DIR/seeds"
$PY scripts/fuzz_seeds.py --out "$BUILD_DIR/seeds"
mkdir -p "$BUILD_DIR/corpus" "$BUILD_DIR/artifacts" "$BUILD_DIR/logs"

run_one() {
  local t="$1" corpus="$BUILD_DIR/corpus/$1"
  mkdir -p "$corpus"
  # ASan's leak checker and libtorch's process-lifetime allocations: leaks are reported, not ignored, except for
  # fuzz_factors, whose LibTorch keeps global allocator caches alive at exit.
  local detect_leaks=1
  [ "$t" = fuzz_factors ] && detect_leaks=0
  ASAN_OPTIONS="detect_leaks=$detect_leaks:allocator_may_return_null=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    nice "$BUILD_DIR/tests/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD_DIR/artifacts/$t-" \
      "$corpus" "$BUILD_DIR/seeds/$t" >"$BUILD_DIR/logs/$t.log" 2>&1
}

declare -A status
pids=()
names=()
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  echo "fuzz.sh: $t for ${SECONDS_PER_TARGET}s" >&2
  run_one "$t" &
  pids+=($!)
  names+=("$t")
done
fail=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then status[${names[$i]}]=ok; else status[${names[$i]}]=FAILED; fail=1; fi
done

summary="$BUILD_DIR/fuzz-summary.tsv"
printf 'target\tseconds\texecutions\texec_per_s\tcorpus_files\tresult\n' >"$summary"
for t in "${TARGETS[@]}"; do
  log="$BUILD_DIR/logs/$t.log"
  execs=$(awk '/^stat::number_of_executed_units:/ {v=$2} END {print v}' "$log")
  rate=$(awk '/^stat::average_exec_per_sec:/ {v=$2} END {print v}' "$log")
  files=$(find "$BUILD_DIR/corpus/$t" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$SECONDS_PER_TARGET" "${execs:-?}" "${rate:-?}" "$files" \
    "${status[$t]}" >>"$summary"
  if [ "${status[$t]}" != ok ]; then
    echo "fuzz.sh: $t FAILED; the last lines of $log:" >&2
    tail -40 "$log" >&2
  fi
done
column -t "$summary" >&2
exit $fail
