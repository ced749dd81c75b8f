#!/usr/bin/env bash
# Every file in configs/ loads through the real --config parser of its subcommand (the name's prefix:
# calibrate-*, eval-ppl-*, passkey-*) and takes effect: the command runs on the bundled organism with the size
# flags overridden to tiny values (a flag on the command line wins over the file), and every key of the file
# that was not overridden must appear with its value in the JSON the command wrote. A key this test does not
# know how to find in the output fails the test (extend the table below), so no key goes unchecked.
# Environment: MX_CLI (the mambaextend binary), MX_SOURCE_DIR (the repository), MX_PYTHON (a python3).
set -euo pipefail
SRC="${MX_SOURCE_DIR:?MX_SOURCE_DIR is not set}"
CLI="${MX_CLI:?MX_CLI is not set}"
PY="${MX_PYTHON:-python3}"
[ -x "$PY" ] || PY=python3
cd "$SRC"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/mx_configs.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
MODEL=assets/models/organism-mamba1-7m
TOK=assets/tokenizers/gpt-neox-20b/tokenizer.json
shopt -s nullglob
files=(configs/*.json)
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no configs/*.json" >&2; exit 1; }
n=0
for cfg in "${files[@]}"; do
  name="$(basename "$cfg" .json)"
  out="$TMP/$name"
  mkdir -p "$out"
  case "$name" in
    calibrate-*)
      cmd=calibrate
      data=assets/books/train  # objective passkey: its sentences are the haystack, those of ../test excluded
      overrides=(--length 256 --samples 1 --iterations 1)
      grep -q '"epochs"' "$cfg" && overrides+=(--epochs 1)
      "$CLI" --log-level warn calibrate --config "$cfg" --model "$MODEL" --tokenizer "$TOK" --data "$data" \
        "${overrides[@]}" --out "$out/result.json" > "$out/stdout" ;;
    eval-ppl-*)
      cmd=eval-ppl
      overrides=(--lengths 256 --max-docs 1)
      "$CLI" --log-level warn eval-ppl --config "$cfg" --model "$MODEL" --tokenizer "$TOK" --data assets/books/test \
        "${overrides[@]}" --out "$out/result.json" > "$out/stdout" ;;
    passkey-*)
      cmd=passkey
      overrides=(--lengths 256 --depths 0.5)
      "$CLI" --log-level warn passkey --config "$cfg" --model "$MODEL" --tokenizer "$TOK" --data assets/books/test \
        "${overrides[@]}" --out "$out/result.json" > "$out/stdout" ;;
    *) echo "FAIL: $cfg: the name must start with the subcommand it configures (calibrate-, eval-ppl-, passkey-)" >&2
       exit 1 ;;
  esac
  "$PY" - "$cfg" "$cmd" "$out/result.json" "${overrides[@]}" <<'PYEOF'
import json, sys
cfg_path, cmd, result_path, *overrides = sys.argv[1:]
cfg = json.load(open(cfg_path))
res = json.load(open(result_path))
overridden = {o[2:] for o in overrides if o.startswith("--")}
hyper = res.get("hyperparameters", {})
opt = hyper.get("spsa") if res.get("method") == "zo" else hyper.get("adam")
# config key -> function(result) giving the value the command recorded
where = {
  "calibrate": {
    "method": lambda r: r["method"], "granularity": lambda r: r["granularity"],
    "protocol": lambda r: hyper["protocol"], "objective": lambda r: hyper["objective"],
    "pred-len": lambda r: hyper["pred_len"], "seed": lambda r: hyper["seed"],
    "c0": lambda r: opt["c0"], "gamma": lambda r: opt["gamma"], "a0": lambda r: opt["a0"],
    "a-schedule": lambda r: opt["a_schedule"], "a-period": lambda r: opt["a_period"], "floor": lambda r: opt["floor"],
    "lr": lambda r: opt["lr"], "clip": lambda r: opt["clip_grad_norm"], "batch": lambda r: opt["batch"],
    "beta1": lambda r: opt["beta1"], "beta2": lambda r: opt["beta2"],
    "parametrization": lambda r: opt["parametrization"],
  },
  "eval-ppl": {
    "protocol": lambda r: r["protocol"], "windows-per-doc": lambda r: r["settings"]["windows_per_doc"],
    "pred-len": lambda r: r["settings"]["pred_len"],
  },
  "passkey": {
    "depths": lambda r: r["depths"], "samples": lambda r: r["samples_per_cell"], "seed": lambda r: r["seed"],
  },
}[cmd]
checked = 0
for raw, want in cfg.items():
    key = raw.replace("_", "-")
    if key in overridden:
        continue
    if key not in where:
        sys.exit(f"FAIL: {cfg_path}: key '{raw}' is not checked by tests/scripts/test_configs.sh (add it)")
    got = where[key](res)
    if got != want and not (isinstance(want, (int, float)) and isinstance(got, (int, float)) and abs(got - want) <= 1e-12 * max(1, abs(want))):
        sys.exit(f"FAIL: {cfg_path}: key '{raw}' = {want!r} but the {cmd} output records {got!r}")
    checked += 1
print(f"ok: {cfg_path} ({cmd}): {checked} keys in effect, {len(cfg) - checked} overridden")
PYEOF
  n=$((n + 1))
done
# The parser refuses what it must refuse: an unknown key and a value of the wrong type, naming file and key.
echo '{"lenghts": [256]}' > "$TMP/bad_key.json"
if "$CLI" eval-ppl --config "$TMP/bad_key.json" --model "$MODEL" --data assets/books/test 2> "$TMP/err"; then
  echo "FAIL: an unknown key was accepted" >&2; exit 1; fi
grep -q 'unknown key "lenghts"' "$TMP/err" || { echo "FAIL: unknown-key message: $(cat "$TMP/err")" >&2; exit 1; }
echo '{"depths": {"a": 1}}' > "$TMP/bad_type.json"
if "$CLI" passkey --config "$TMP/bad_type.json" --model "$MODEL" --lengths 256 --data assets/books/test 2> "$TMP/err"; then
  echo "FAIL: an object value was accepted" >&2; exit 1; fi
grep -q 'bad_type.json: key "depths"' "$TMP/err" || { echo "FAIL: wrong-type message: $(cat "$TMP/err")" >&2; exit 1; }
echo "test_configs: $n config files load and take effect"
