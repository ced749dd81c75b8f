#!/usr/bin/env bash
# Calibration speed and memory on one GPU (issue 10 "Show it"), on random models of published shapes
# (scripts/make_random_model.py; real checkpoints cannot be downloaded here):
#   zo_pile_130m        CFZO with the paper's Proof-Pile setting: K = 50 SPSA iterations, 20 calibration windows,
#                       L = 16384, proofpile protocol (every token scored), mamba-130m shape (target <= 60 s);
#                       zo_pile_130m_seg2048 the same with the default 2048-token segments
#   bp_step_<shape>_<L> one CFBP step (1 window, Adam, segment checkpointing) at L = 16384 and 65536 for the
#                       mamba-130m and mamba-1.4b shapes (target for 1.4b at 64k: <= 20 GB of GPU memory)
# Each run is `mambaextend calibrate` in a fresh process; its "timing:" log line (total, initial objective,
# per-iteration seconds, peak RSS, peak CUDA allocator memory) and /usr/bin/time's wall and max RSS go into one
# JSON file. A run that fails is recorded with its exit status and the last lines of its log.
# Usage: scripts/bench_calibrate_gpu.sh [OUT.json]        (default bench_calibrate_gpu.json)
# Environment: MX_CLI (default build/mambaextend, a CUDA build), MX_PYTHON (python3 with torch), MX_BENCH_DTYPE
# (bf16 | fp32, default fp32), MX_BENCH_SEGMENT (CFBP segment length, default 2048), MX_BENCH_WORK (scratch
# directory for the random models, default a temporary one), MX_BENCH_ONLY (space-separated run names); for a
# smoke test elsewhere: MX_BENCH_DEVICE (default cuda), MX_BENCH_ZO_LENGTH (16384), MX_BENCH_ZO_ITERS (50),
# MX_BENCH_ZO_SAMPLES (20), MX_BENCH_BP_LENGTHS ("16384 65536").
# MX_BENCH_DATA (calibration data, default assets/books/train), MX_BENCH_BP_SHAPES ("mamba-130m mamba-1.4b"; Mamba2 shapes such as mamba2-130m work too).
# Data: assets/books/train (its longest book has ~98k tokens, enough for L = 65536); the windows are drawn with
# the default seed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench_calibrate_gpu.json}"
CLI="${MX_CLI:-build/mambaextend}"
PY="${MX_PYTHON:-python3}"
DTYPE="${MX_BENCH_DTYPE:-fp32}"
SEG="${MX_BENCH_SEGMENT:-2048}"
DEVICE="${MX_BENCH_DEVICE:-cuda}"
ZO_L="${MX_BENCH_ZO_LENGTH:-16384}"
ZO_K="${MX_BENCH_ZO_ITERS:-50}"
ZO_N="${MX_BENCH_ZO_SAMPLES:-20}"
BP_LENGTHS="${MX_BENCH_BP_LENGTHS:-16384 65536}"
TOK=assets/tokenizers/gpt-neox-20b/tokenizer.json
DATA="${MX_BENCH_DATA:-assets/books/train}"
[ -x "$CLI" ] || { echo "bench_calibrate_gpu: $CLI not found (build with CUDA first, or set MX_CLI)" >&2; exit 1; }
WORK="${MX_BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
export MAMBAEXTEND_CACHE="${MAMBAEXTEND_CACHE:-$WORK/cache}"
rows="$WORK/rows.jsonl"
: > "$rows"

model_dir() {  # shape -> directory with a random model of that shape (made once)
  local dir="$WORK/models/$1"
  [ -f "$dir/model.safetensors" ] || "$PY" scripts/make_random_model.py --shape "$1" --out "$dir" --dtype bf16 >&2
  echo "$dir"
}

run() {  # name shape args...
  local name="$1" shape="$2"
  shift 2
  if [ -n "${MX_BENCH_ONLY:-}" ] && [[ " $MX_BENCH_ONLY " != *" $name "* ]]; then return; fi
  local model
  model="$(model_dir "$shape")" || { echo "bench_calibrate_gpu: cannot make the $shape model" >&2; return; }
  echo "bench_calibrate_gpu: $name" >&2
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$CLI" --log-level info calibrate --model "$model" \
    --tokenizer "$TOK" --data "$DATA" --device "$DEVICE" --dtype "$DTYPE" --out "$WORK/$name.factors.json" "$@" \
    > "$WORK/$name.stdout" 2> "$WORK/$name.log"
  local rc=$?
  "$PY" - "$name" "$shape" "$rc" "$WORK/$name.log" "$WORK/$name.time" "$*" >> "$rows" <<'EOF'
import json, re, sys
name, shape, rc, log, tfile, args = sys.argv[1:7]
text = open(log, errors="replace").read()
row = {"name": name, "shape": shape, "args": args, "exit_status": int(rc)}
try:
    wall, rss_kb = open(tfile).read().split()[-2:]
    row["wall_s"] = float(wall)
    row["max_rss_mb"] = int(rss_kb) / 1024.0
except Exception:
    pass
m = re.search(r"timing: total ([\d.]+) s, initial objective ([\d.]+) s, (\d+) iteration\(s\) in ([\d.]+) s "
              r"\(([\d.]+) s each\); peak RSS (\d+) MB, peak CUDA memory (\d+) MB", text)
if m:
    row.update({"total_s": float(m[1]), "initial_objective_s": float(m[2]), "iterations": int(m[3]),
                "iterations_s": float(m[4]), "s_per_iteration": float(m[5]), "peak_rss_mb": int(m[6]),
                "peak_cuda_mb": int(m[7])})
m = re.search(r"initial objective \((\w+)\) on the calibration set: ([\d.naif]+)", text)
if m:
    row["initial_objective"] = m[2]
if int(rc) != 0:
    row["log_tail"] = text.strip().splitlines()[-5:]
print(json.dumps(row))
EOF
}

# The objective's windows per forward are left to calibrate (--eval-batch 0: a token budget on a GPU); segments of L
# (one per window) and of 2048 tokens (the default).
run zo_pile_130m mamba-130m --method zo --protocol proofpile --samples "$ZO_N" --length "$ZO_L" \
  --iterations "$ZO_K" --segment-len "$ZO_L"
run zo_pile_130m_seg2048 mamba-130m --method zo --protocol proofpile --samples "$ZO_N" --length "$ZO_L" \
  --iterations "$ZO_K" --segment-len 2048
for shape in ${MX_BENCH_BP_SHAPES:-mamba-130m mamba-1.4b}; do
  for L in $BP_LENGTHS; do
    run "bp_step_${shape}_${L}" "$shape" --method bp --samples 1 --iterations 1 --length "$L" --segment-len "$SEG"
  done
done

"$PY" - "$rows" "$OUT" "$DTYPE" "$SEG" "$DEVICE" <<'EOF'
import datetime, json, platform, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except Exception:
    gpu = None
out = {"bench": "calibrate_gpu", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
       "host": platform.node(), "gpu": gpu, "device": sys.argv[5], "dtype": sys.argv[3], "bp_segment_len": int(sys.argv[4]),
       "targets": {"zo_pile_130m_wall_s": 60, "bp_step_mamba-1.4b_65536_peak_cuda_mb": 20480},
       "runs": rows}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out, indent=1))
EOF
