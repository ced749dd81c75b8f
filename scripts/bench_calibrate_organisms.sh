#!/usr/bin/env bash
# Vanilla vs CFZO vs CFBP perplexity on the two organisms (issue 10 "Show it"): for each model and context length
# L, calibrate on the train split with CFZO and with CFBP, then evaluate vanilla, zo and bp on the test split with
# the pg19 protocol (up to 10 windows per book, loss on the last 100 tokens). Calibration and evaluation data are
# different directories. Every run is the real CLI; results (factors, eval JSON, logs) go to WORK, and one summary
# JSON with every number and the exact settings goes to OUT.
# Usage: scripts/bench_calibrate_organisms.sh [OUT.json]
# Environment: MX_CLI (build/mambaextend), MX_DEVICE (cuda), MX_TRAIN / MX_TEST (../shared/data/books/{train,test}),
#   MX_LENGTHS ("8192 16384 32768"), MX_MODELS ("mamba1 mamba2"), MX_WORK (scratch dir), MX_PYTHON (python3),
#   ZO: MX_ZO_ITERS (50), MX_ZO_SAMPLES (16), MX_ZO_OBJECTIVE (ppl, the paper's; with the Pile a_k = 0.001 a
#   mean-NLL objective barely moves); BP: MX_BP_STEPS (30), MX_BP_SAMPLES (16), MX_BP_BATCH (4),
#   MX_BP_GRANULARITY (channel, the paper's CFBP).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench_calibrate_organisms.json}"
CLI="${MX_CLI:-build/mambaextend}"
PY="${MX_PYTHON:-python3}"
DEV="${MX_DEVICE:-cuda}"
TRAIN="${MX_TRAIN:-../shared/data/books/train}"
TEST="${MX_TEST:-../shared/data/books/test}"
LENGTHS="${MX_LENGTHS:-8192 16384 32768}"
MODELS="${MX_MODELS:-mamba1 mamba2}"
ZO_K="${MX_ZO_ITERS:-50}" ZO_N="${MX_ZO_SAMPLES:-16}" ZO_OBJ="${MX_ZO_OBJECTIVE:-ppl}"
BP_K="${MX_BP_STEPS:-30}" BP_N="${MX_BP_SAMPLES:-16}" BP_B="${MX_BP_BATCH:-4}" BP_G="${MX_BP_GRANULARITY:-channel}"
TOK=assets/tokenizers/gpt-neox-20b/tokenizer.json
[ -x "$CLI" ] || { echo "bench_calibrate_organisms: $CLI not found (build first, or set MX_CLI)" >&2; exit 1; }
for d in "$TRAIN" "$TEST"; do [ -d "$d" ] || { echo "bench_calibrate_organisms: no data directory $d" >&2; exit 1; }; done
WORK="${MX_WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
export MAMBAEXTEND_CACHE="${MAMBAEXTEND_CACHE:-$WORK/cache}"

timed() {  # name cmd... : runs cmd, logs to WORK/name.log, wall seconds to WORK/name.wall
  local name="$1" t0 rc
  shift
  t0=$(date +%s.%N)
  "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }' > "$WORK/$name.wall"
  [ $rc -eq 0 ] || { echo "bench_calibrate_organisms: $name failed (exit $rc):" >&2; tail -3 "$WORK/$name.log" >&2; }
  return $rc
}

for m in $MODELS; do
  model="assets/models/organism-$m-7m"
  for L in $LENGTHS; do
    cell="${m}_$L"
    echo "bench_calibrate_organisms: $cell" >&2
    common=(--model "$model" --tokenizer "$TOK" --device "$DEV" --length "$L" --protocol pg19 --pred-len 100 --seed 0)
    timed "${cell}_zo_cal" "$CLI" --log-level info calibrate "${common[@]}" --data "$TRAIN" --method zo \
      --granularity layer --samples "$ZO_N" --iterations "$ZO_K" --objective "$ZO_OBJ" --out "$WORK/${cell}_zo.factors.json"
    timed "${cell}_bp_cal" "$CLI" --log-level info calibrate "${common[@]}" --data "$TRAIN" --method bp \
      --granularity "$BP_G" --samples "$BP_N" --iterations "$BP_K" --batch "$BP_B" --out "$WORK/${cell}_bp.factors.json"
    ev=(--model "$model" --tokenizer "$TOK" --device "$DEV" --data "$TEST" --protocol pg19 --windows-per-doc 10
        --pred-len 100 --lengths "$L")
    timed "${cell}_vanilla_eval" "$CLI" --log-level warn eval-ppl "${ev[@]}" --out "$WORK/${cell}_vanilla.eval.json"
    for meth in zo bp; do
      [ -f "$WORK/${cell}_$meth.factors.json" ] && timed "${cell}_${meth}_eval" "$CLI" --log-level warn eval-ppl "${ev[@]}" \
        --factors "$WORK/${cell}_$meth.factors.json" --out "$WORK/${cell}_$meth.eval.json"
    done
  done
done

"$PY" - "$WORK" "$OUT" <<EOF
import datetime, glob, json, os, platform, subprocess, sys
work, out = sys.argv[1:3]
def load(p):
    try: return json.load(open(p))
    except Exception: return None
def wall(name):
    try: return float(open(os.path.join(work, name + ".wall")).read())
    except Exception: return None
rows = []
for m in "$MODELS".split():
    for L in "$LENGTHS".split():
        cell = f"{m}_{L}"
        row = {"model": f"organism-{m}-7m", "length": int(L)}
        for meth in ("vanilla", "zo", "bp"):
            e = load(os.path.join(work, f"{cell}_{meth}.eval.json"))
            if e:
                r = e["results"][0]
                row[meth] = {"ppl": r["ppl"], "ppl_se": r["ppl_se"], "windows": r["windows"], "tokens": r["tokens"],
                             "eval_s": wall(f"{cell}_{meth}_eval")}
            if meth != "vanilla":
                f = load(os.path.join(work, f"{cell}_{meth}.factors.json"))
                if f and meth in row:
                    row[meth]["calibrate_s"] = wall(f"{cell}_{meth}_cal")
                    obj = f.get("objective") or {}
                    row[meth]["objective"] = {k: obj.get(k) for k in ("name", "initial", "final", "evaluated_on") if k in obj}
                    sc = f.get("scales") or []
                    row[meth]["scales_layer_mean"] = [sum(v) / len(v) if isinstance(v, list) else v for v in sc]
        rows.append(row)
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except Exception:
    gpu = None
res = {"bench": "calibrate_organisms", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
       "host": platform.node(), "gpu": gpu, "device": "$DEV", "train": "$TRAIN", "test": "$TEST",
       "zo": {"iterations": $ZO_K, "samples": $ZO_N, "objective": "$ZO_OBJ", "granularity": "layer"},
       "bp": {"steps": $BP_K, "samples": $BP_N, "batch": $BP_B, "granularity": "$BP_G", "lr": 0.1},
       "eval": {"protocol": "pg19", "windows_per_doc": 10, "pred_len": 100}, "rows": rows}
json.dump(res, open(out, "w"), indent=1)
for r in rows:
    print(r["model"], r["length"], *[f"{k} {r[k]['ppl']:.3f}" for k in ("vanilla", "zo", "bp") if k in r])
EOF
