#!/usr/bin/env bash
# Builds and runs the standalone Mamba1 kernel test + benchmark (kernels/dev/mamba1_kernels.cu, nvcc only, no
# LibTorch) on a machine with an NVIDIA GPU. Steps (arguments, in order; default "test bench"; "build" only builds):
#   test      every kernel against its float64 CPU reference (fresh random inputs)     -> test.log
#   sanitize  compute-sanitizer memcheck and racecheck on a few small cases           -> sanitize.log
#   bench     timings (CUDA events, medians) at E = 5120, N = 16, batch 1, L = 16k/64k/128k, bf16 and fp32
#   sass      opcode mix of the S6 kernels' loops (cuobjdump + kernels/dev/sass_mix.py)  -> sass_mix.txt
#   ncu       Nsight Compute (clock control off) on one S6 forward and one backward   -> ncu_{fwd,bwd}.txt
# Results go to $OUT (default results/kernels_mamba1): mamba1_kernels.json (tests; bench/ for the timings), the
# logs, and the ptxas register / spill report (ptxas.txt). The binary is rebuilt only when kernels/ changed. Environment: MX_CUDA_ARCH (default sm_90), MX_KBUILD (build dir), MX_NVCC_FLAGS (extra nvcc flags, e.g. -DMX_S6_FWD_CTAS_PER_SM=5 to try another register budget; use its own MX_KBUILD).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/kernels_mamba1}"
BUILD="${MX_KBUILD:-build-kernels}"
ARCH="${MX_CUDA_ARCH:-sm_90}"
mkdir -p "$OUT" "$BUILD"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(test bench)

# ---- build: one nvcc per translation unit, in parallel, then link
srcs=(kernels/dev/mamba1_kernels.cu kernels/s6/*.cu kernels/conv1d/conv1d.cu kernels/norm/norm.cu)
flags=(-std=c++17 -O3 -arch="$ARCH" --expt-relaxed-constexpr -lineinfo -I kernels ${MX_NVCC_FLAGS:-})
BIN="$BUILD/mamba1_kernels"
stale=1
if [ -x "$BIN" ] && [ -z "$(find kernels -newer "$BIN" -type f | head -1)" ]; then stale=0; fi
pids=()
[ $stale -eq 1 ] && for s in "${srcs[@]}"; do
  o="$BUILD/$(basename "$s" .cu).o"
  nvcc "${flags[@]}" -Xptxas -v -c "$s" -o "$o" 2> "$BUILD/$(basename "$s" .cu).ptxas" &
  pids+=($!)
done
fail=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "nvcc failed: ${srcs[$i]}"; cat "$BUILD/$(basename "${srcs[$i]}" .cu).ptxas"; fail=1
  fi
done
[ $fail -eq 0 ] || exit 1
objs=(); for s in "${srcs[@]}"; do objs+=("$BUILD/$(basename "$s" .cu).o"); done
[ $stale -eq 1 ] && nvcc -arch="$ARCH" "${objs[@]}" -o "$BIN"
# Register / spill report per kernel (the s6 kernels at N = 16 are the ones that matter).
for f in "$BUILD"/*.ptxas; do
  awk '/Compiling entry function/ {fn=$0} /Used [0-9]+ registers/ {print fn " :: " $0}' "$f"
done | sed -E "s/.*Compiling entry function '([^']+)'.*:: +ptxas info +: /\1 /" | c++filt > "$OUT/ptxas.txt" || true
grep -h "spill" "$BUILD"/*.ptxas | sort | uniq -c | sort -rn | head -5 >> "$OUT/ptxas.txt" || true

status=0
for step in "${steps[@]}"; do
  case "$step" in
    test)
      "$BIN" --test --out "$OUT" 2>&1 | tee "$OUT/test.log" || status=1 ;;
    sanitize)
      : > "$OUT/sanitize.log"
      for tool in memcheck racecheck synccheck; do
        extra=()
        [ $tool = memcheck ] && extra=(--leak-check full)
        [ $tool = racecheck ] && extra=(--racecheck-report analysis)
        echo "=== $tool" >> "$OUT/sanitize.log"
        timeout "${MX_SANITIZE_TIMEOUT:-240}" compute-sanitizer --tool $tool "${extra[@]}" --error-exitcode 3 \
          "$BIN" --test --tiny >> "$OUT/sanitize.log" 2>&1 || { echo "compute-sanitizer $tool: failed or timed out"; status=1; }
      done
      grep -E "^===|ERROR SUMMARY|RACECHECK SUMMARY|tests:" "$OUT/sanitize.log" || true ;;
    bench)
      mkdir -p "$OUT/bench"
      "$BIN" --bench --out "$OUT/bench" 2>&1 | tee "$OUT/bench.log" || status=1 ;;
    ncu)
      for k in fwd bwd; do
        # forward: the first pass of the time split and the main pass (both s6_fwd_kernel); backward: main
        ncu --clock-control none -k "regex:s6_${k}_kernel" -c $([ $k = fwd ] && echo 2 || echo 1) \
            --section SpeedOfLight --section Occupancy --section SourceCounters \
            --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SchedulerStats \
            --section WarpStateStats --section LaunchStats "$BIN" --profile > "$OUT/ncu_${k}.txt" 2>&1 ||
          echo "ncu failed for $k (see ncu_${k}.txt)"
      done ;;
    build) ;;  # the build above only
    sass)  # opcode mix of the N = 16 bf16 S6 kernels and their loops
      for o in s6_fwd s6_bwd; do cuobjdump -sass "$BUILD/$o.o"; done |
        python3 kernels/dev/sass_mix.py bf16ELi16ELb1 bf16ELi16EEEv > "$OUT/sass_mix.txt" 2>&1 || true ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
exit $status
