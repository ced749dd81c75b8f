#!/usr/bin/env bash
# The sanitizer job (issue 7; scripts/test.sh runs it after the normal suite, so CI runs it too):
#   1. an AddressSanitizer + UndefinedBehaviorSanitizer build of the library, the CLI and the unit tests (gcc,
#      CUDA off, -DMAMBAEXTEND_SANITIZE=ON) into build-asan/ ($MX_ASAN_BUILD_DIR), then the unit tests of every
#      part that reads outside input, run in one process: checkpoints (safetensors, index, pickle zip, loader),
#      config.json, tokenizer, corpora, factors files, the CLI's input errors, the hostile-input tests, the
#      calibrate resume / signal tests, and the small-model tests (tiny models vs transformers, one organism
#      forward, segmented and step decoding). The whole suite under ASan takes too long for CI's 2 cores
#      (MX_ASAN_FILTER=* runs it all);
#   2. every libFuzzer target for $MX_FUZZ_SECONDS (30) seconds (scripts/fuzz.sh; clang).
# Needs the oracle fixtures of the normal build ($MX_FIXTURES, default <normal build dir>/fixtures, written by its
# ctest run). MX_SANITIZE=0 skips the job; MX_FUZZ=0 skips step 2. Any sanitizer report fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
ASAN_DIR="${MX_ASAN_BUILD_DIR:-build-asan}"
FIXTURES="${MX_FIXTURES:-$PWD/${MX_BUILD_DIR:-build}/fixtures}"
[ -d "$FIXTURES" ] || { echo "sanitize.sh: no oracle fixtures in $FIXTURES (run the normal ctest first)" >&2; exit 1; }
# (parameterised suites are named <instantiation>/<suite>.<test>/<param>, hence the leading */)
FILTER="${MX_ASAN_FILTER:-NameMap.*:Safetensors.*:TorchZip.*:Checkpoints.*:OrganismCheckpoints.*:InspectCli.*\
:ConfigParse.*:Tokenizer.*:Corpus.*:Factors.*:CalibFactors.*:CalibWindows.*:CalibNonFinite.*:*CalibResume*\
:CalibCli.*:MakeWindows.*:EvalPplCli.BadInputGivesOneClearLine:Hostile*.*:OpsValidation.*:*/ModelParity.*\
:*/ModelParityDecode.*:*/ModelParitySegmented.*:*/OrganismParity.*:ModelParityDecodeOrganism.*}"

t0=$(date +%s)
# -O1: the usual optimisation for ASan, and much quicker to compile than Release's -O3 on CI's two cores.
MX_BUILD_DIR="$ASAN_DIR" bash scripts/build.sh -DMAMBAEXTEND_SANITIZE=ON -DMAMBAEXTEND_CUDA=OFF \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG"
t1=$(date +%s)
PY="$PWD/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
# LibTorch and libgomp are not instrumented and keep process-lifetime allocations: their leaks are suppressed,
# ours are not.
supp="$ASAN_DIR/lsan.supp"
printf 'leak:libtorch_cpu.so\nleak:libc10.so\nleak:libgomp.so\nleak:libtorch.so\n' >"$supp"
export MX_SOURCE_DIR="$PWD" MX_FIXTURES="$FIXTURES" MX_CLI="$PWD/$ASAN_DIR/mambaextend" MX_PYTHON="$PY" \
       OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_odr_violation=0"
export LSAN_OPTIONS="suppressions=$PWD/$supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
"$ASAN_DIR/tests/mx_tests" --gtest_filter="$FILTER" --gtest_brief=1
t2=$(date +%s)
echo "sanitize.sh: ASan+UBSan build $((t1 - t0)) s, unit tests under ASan+UBSan $((t2 - t1)) s" >&2
if [ "${MX_FUZZ:-1}" != 0 ]; then
  MX_FUZZ_SECONDS="${MX_FUZZ_SECONDS:-30}" bash scripts/fuzz.sh
  t3=$(date +%s)
  echo "sanitize.sh: fuzz build + runs $((t3 - t2)) s; sanitizer job total $((t3 - t0)) s" >&2
fi
