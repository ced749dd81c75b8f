#!/usr/bin/env bash
# Builds the standalone Mamba2 SSD kernel program (kernels/dev/ssd_kernels.cu: nvcc only, no LibTorch) and runs
# it on the GPU: correctness against the float64 reference (--test), then the benchmark at H = 80, P = 64, N = 128,
# batch 1, bf16, L = 65536 / 131072 / 524288 with peak memory and a per-kernel breakdown (--bench). Results go to
# $OUT (default ./results/mamba2_kernels): ssd_kernels.json and ssd_kernels.log.
#   scripts/bench_kernels_mamba2.sh [--quick] [--no-test] [--no-bench] [--no-build] [--sanitize] [--ncu]
# --quick: small test shapes only; --no-build: reuse the program built by an earlier call ($MX_SSD_BIN); --sanitize: also run the quick tests under compute-sanitizer memcheck;
# --ncu: Nsight Compute speed-of-light sections of one forward + backward at L = 65536 (ssd_ncu.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/results/mamba2_kernels}"
mkdir -p "$OUT"
test=--test bench=--bench quick="" sanitize=0 ncu=0 build=1
for a in "$@"; do
  case "$a" in
    --quick) quick=--quick ;;
    --no-test) test="" ;;
    --no-bench) bench="" ;;
    --sanitize) sanitize=1 ;;
    --ncu) ncu=1 ;;
    --no-build) build=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
BIN="${MX_SSD_BIN:-/tmp/mx_ssd_kernels}"
obj=$(mktemp -d)
if [ "$build" = 1 ]; then
  flags=(-std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -lineinfo -I kernels)
  pids=()
  for f in kernels/dev/ssd_kernels.cu kernels/ssd/ssd_fwd.cu kernels/ssd/ssd_bwd.cu; do
    nvcc "${flags[@]}" -c "$f" -o "$obj/$(basename "$f").o" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  nvcc -arch=sm_90 "$obj"/*.o -o "$BIN"
fi
if [ "$sanitize" = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN" --test --quick --out "$obj" 2>&1 | tail -n 30 \
    | tee "$OUT/ssd_sanitize.log"
fi
if [ -n "$test$bench" ]; then
  "$BIN" $test $quick $bench --out "$OUT" 2>&1 | tee "$OUT/ssd_kernels.log"
fi
if [ "$ncu" = 1 ]; then
  timeout 180 ncu --section SpeedOfLight --section Occupancy --section LaunchStats "$BIN" --profile > "$OUT/ssd_ncu.txt" 2>&1 || true
fi
