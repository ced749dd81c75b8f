#!/usr/bin/env bash
# temporary experiment driver (not committed)
set -uo pipefail
O=${OUT:-/tmp/o}; mkdir -p $O; B=/tmp/eb; mkdir -p $B
flags=(-std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -lineinfo -I kernels)
t0=$(date +%s)
nvcc "${flags[@]}" -c kernels/dev/ssd_kernels.cu -o $B/main.o &
nvcc "${flags[@]}" -c kernels/ssd/ssd_bwd.cu -o $B/bwd.o &
VARS=${VARS:-"warp:"}
for v in $VARS; do n=${v%%:*}; f=${v#*:}
  nvcc "${flags[@]}" ${f//,/ } -c kernels/ssd/ssd_fwd.cu -o $B/fwd_$n.o &
done
wait
echo "build $(( $(date +%s) - t0 )) s"
for v in $VARS; do n=${v%%:*}; nvcc -arch=sm_90 $B/main.o $B/bwd.o $B/fwd_$n.o -o $B/ssd_$n; done
first=1
for v in $VARS; do n=${v%%:*}
  mkdir -p $O/v$n
  if [ $first = 1 ] && [ -z "${NOTEST:-}" ]; then $B/ssd_$n --test --bench --out $O/v$n > $O/v$n.log 2>&1; echo "main $n rc $?"; grep -E "ALL OK|FAIL|bench L" $O/v$n.log; first=0
  else $B/ssd_$n --bench --len 65536 --out $O/v$n > $O/v$n.log 2>&1; fi
  echo "v $n"; grep -E "bench L=65536" -A1 $O/v$n.log | tail -1 | tr ',' '\n' | grep -E "fwd_ms|fwd_chunk|fwd_bwd_ms|_state|bwd_chunk_scan"
done
if [ -n "${NCU:-}" ]; then n=${VARS%%:*}; timeout 300 ncu -k regex:"$NCU" -c 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats --section Occupancy $B/ssd_$n --profile > $O/ncu.txt 2>&1; grep -E "Duration|Issued Instructions  |Eligible Warps|Warp Cycles Per Issued|Throughput  |Achieved Active" $O/ncu.txt; fi
