#!/usr/bin/env bash
# The main job on a fresh clone: set up, build, calibrate the bundled Mamba organism's Δ scales with CFZO (SPSA)
# at a context 32x its 256-token training length on the bundled *train* books, then evaluate vanilla vs calibrated
# perplexity on the bundled *test* books (pg19 protocol) and print both. CPU only; a few minutes on 2 cores.
# Outputs go to results/main/ (factors.json, vanilla.json, calibrated.json).
#   MX_MAIN_MODEL (default assets/models/organism-mamba1-7m), MX_MAIN_LENGTH (8192), MX_MAIN_ITERS (8),
#   MX_MAIN_SAMPLES (2), MX_BUILD_DIR (build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
MODEL="${MX_MAIN_MODEL:-assets/models/organism-mamba1-7m}"
L="${MX_MAIN_LENGTH:-8192}"
ITERS="${MX_MAIN_ITERS:-8}"
SAMPLES="${MX_MAIN_SAMPLES:-2}"
TOK=assets/tokenizers/gpt-neox-20b/tokenizer.json
OUT=results/main
mkdir -p "$OUT"
CLI="${MX_BUILD_DIR:-build}/mambaextend"

echo "== calibrate: CFZO (objective: perplexity, as in the paper) on assets/books/train, L=$L, $SAMPLES windows, $ITERS iterations" >&2
"$CLI" calibrate --model "$MODEL" --tokenizer "$TOK" --data assets/books/train --length "$L" --method zo \
  --granularity layer --objective ppl --samples "$SAMPLES" --iterations "$ITERS" --seed 0 --out "$OUT/factors.json"

echo "== evaluate on assets/books/test (pg19 protocol: 2 windows per book, loss on the last 100 tokens)" >&2
common=(--model "$MODEL" --tokenizer "$TOK" --data assets/books/test --protocol pg19 --windows-per-doc 2
        --pred-len 100 --lengths "2048,$L")
"$CLI" --log-level warn eval-ppl "${common[@]}" --out "$OUT/vanilla.json" > "$OUT/vanilla.txt"
"$CLI" --log-level warn eval-ppl "${common[@]}" --factors "$OUT/factors.json" --out "$OUT/calibrated.json" > "$OUT/calibrated.txt"
echo "vanilla:";    cat "$OUT/vanilla.txt"
echo "calibrated:"; cat "$OUT/calibrated.txt"
