#!/usr/bin/env bash
# Peak memory of `mambaextend eval-ppl` on CPU against the context length (design.md "Memory at long contexts":
# memory must not grow with L). For each organism and each L (default 8192 32768 65536) it runs, in a fresh
# process, one pg19 window of L tokens (--max-docs 1 --windows-per-doc 1 --pred-len 100) of the first book of
# the data directory long enough for it, and records the peak RSS two ways: getrusage in the CLI's --out JSON
# ("peak_rss_mb") and /usr/bin/time -v ("Maximum resident set size"). Writes a JSON summary with the ratio of the
# largest L's peak to the smallest L's and whether it stays under 1.5x.
# Usage: scripts/bench_memory.sh [OUT.json]     (default bench_memory.json)
# Environment: MX_CLI (default build/mambaextend), MX_BENCH_DATA (default ../shared/data/books/validation, else
# assets/books/validation), MX_BENCH_LENGTHS, MX_BENCH_MODELS (model directories), MX_BENCH_ARGS (extra flags).
# Limits: the books must hold at least max(L) tokens (validation/119.txt has ~225k); CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench_memory.json}"
CLI="${MX_CLI:-build/mambaextend}"
DATA="${MX_BENCH_DATA:-../shared/data/books/validation}"
[ -d "$DATA" ] || DATA=assets/books/validation
TOK=assets/tokenizers/gpt-neox-20b/tokenizer.json
LENGTHS="${MX_BENCH_LENGTHS:-8192 32768 65536}"
MODELS="${MX_BENCH_MODELS:-assets/models/organism-mamba1-7m assets/models/organism-mamba2-7m}"
[ -x "$CLI" ] || { echo "bench_memory: $CLI not found (build first, or set MX_CLI)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_memory: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export MAMBAEXTEND_CACHE="${MAMBAEXTEND_CACHE:-$WORK/cache}"

rows="$WORK/rows.jsonl"
: > "$rows"
for model in $MODELS; do
  name="$(basename "$model")"
  for L in $LENGTHS; do
    echo "bench_memory: $name L=$L" >&2
    /usr/bin/time -v -o "$WORK/time.txt" "$CLI" --log-level warn eval-ppl --model "$model" --tokenizer "$TOK" \
      --data "$DATA" --lengths "$L" --max-docs 1 --windows-per-doc 1 --pred-len 100 ${MX_BENCH_ARGS:-} \
      --out "$WORK/r.json" > /dev/null
    maxrss_kb="$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$WORK/time.txt")"
    python3 - "$WORK/r.json" "$name" "$maxrss_kb" >> "$rows" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
res = r["results"][0]
print(json.dumps({"model": sys.argv[2], "length": res["length"], "windows": res["windows"],
                  "tokens_scored": res["tokens"], "ppl": res["ppl"], "seconds": res["seconds"],
                  "segment_len": r["settings"]["segment_len"], "peak_rss_mb": r["peak_rss_mb"],
                  "time_max_rss_mb": int(sys.argv[3]) / 1024.0}))
EOF
  done
done

python3 - "$rows" "$OUT" "$DATA" <<'EOF'
import datetime, json, os, platform, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
models = {}
for r in rows:
    models.setdefault(r["model"], []).append(r)
summary = {}
for name, rs in models.items():
    rs.sort(key=lambda r: r["length"])
    lo, hi = rs[0], rs[-1]
    ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"] if lo["peak_rss_mb"] else None
    if any(r["windows"] == 0 for r in rs):
        ok, why = False, "some length had no window (no document long enough)"
    else:
        ok, why = ratio is not None and ratio < 1.5, None
    summary[name] = {"rows": rs, "ratio_largest_over_smallest": ratio, "under_1_5x": ok, "note": why}
doc = {"format": "mambaextend.bench-memory/v1", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
       "host": platform.node(), "cpus": os.cpu_count(), "data": sys.argv[3],
       "protocol": "pg19 --max-docs 1 --windows-per-doc 1 --pred-len 100, device cpu, fp32, one process per length",
       "models": summary}
tmp = sys.argv[2] + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, sys.argv[2])
print(f"{'model':<22} {'L':>7} {'peak RSS MB (getrusage)':>24} {'(time -v)':>10} {'seconds':>8}")
for name, s in summary.items():
    for r in s["rows"]:
        print(f"{name:<22} {r['length']:>7} {r['peak_rss_mb']:>24.1f} {r['time_max_rss_mb']:>10.1f} {r['seconds']:>8.1f}")
    print(f"{name:<22} ratio {s['ratio_largest_over_smallest']:.3f}  under 1.5x: {s['under_1_5x']}")
sys.exit(0 if all(s["under_1_5x"] for s in summary.values()) else 1)
EOF
