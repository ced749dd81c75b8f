#!/usr/bin/env bash
# Batch runs: calibrate, then eval-ppl (and passkey with --passkey), over models × context lengths × methods,
# one directory and one log per cell. Then `mambaextend report --runs OUT` makes the tables and figures.
#
#   scripts/sweep.sh --models assets/models/organism-mamba1-7m,assets/models/organism-mamba2-7m \
#       --lengths 512,1024,2048,4096 --methods vanilla,zo --out results/sweep [options]
#
# Cells are numbered model-major, then length, then method (--list prints the numbering). A cell is
#   OUT/<model dir name>/L<length>/<method>/
#     cell.json       what the cell is (model, length, method, index); report labels rows with it
#     cell.log        every command run for the cell and its output (appended on every run)
#     factors.json    calibrate --out (methods zo, bp); factors.json.state.json while a calibration runs
#     ppl.json        eval-ppl --out at the cell's length (with --factors factors.json for zo / bp)
#     passkey.json    passkey --out at the cell's length over --depths (with --passkey), and passkey.svg
# A cell is finished when ppl.json (and passkey.json with --passkey) exists; the commands write them atomically,
# so a killed run never leaves one half-written. Re-running skips finished cells and finishes the others: a
# calibration always runs with --resume, so it continues from its state file where it stopped.
#
# Options (lists are comma-separated):
#   --models DIRS --lengths LS --methods vanilla,zo,bp --out DIR      what to run and where (required)
#   --train PATH    calibration data (default assets/books/train)   --test PATH   evaluation data (assets/books/test)
#   --tokenizer F   (default assets/tokenizers/gpt-neox-20b/tokenizer.json)
#   --zo-config F / --bp-config F / --eval-config F / --passkey-config F   --config files (configs/); the sweep's
#                   own flags (--length, --lengths, --method, paths) override them
#   --samples N --iterations K --seed S     calibrate flags (override the configs)
#   --device cpu|cuda --dtype fp32|bf16     for every command
#   --calib-args "..." --eval-args "..." --passkey-args "..."   extra flags, split on spaces
#   --passkey [--passkey-data PATH] [--depths 0,0.25,0.5,0.75,1]   also run the passkey grid at each cell's length
#   --cli PATH      the mambaextend binary (default $MX_CLI, else build/mambaextend)
#   --list          print the cells (index, model, length, method, directory) and exit
#   --cell I        run only cell I;   --array-task   run only cell $SLURM_ARRAY_TASK_ID (the Slurm entry point)
#   --slurm [--no-submit] [--sbatch-args "..."]   write OUT/sweep.sbatch, an array job with one task per cell
#                   (each task runs this script with --array-task), and submit it with sbatch when sbatch exists
# Exit status: 0 all selected cells finished; 1 a cell failed (see its cell.log); 2 usage error; 3 some cells
# stopped before the end (rerun to resume).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/sweep.sh"

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0; }
die() { echo "sweep: $*" >&2; exit 2; }

models="" lengths="" methods="vanilla,zo" out=""
train="assets/books/train" test="assets/books/test" tokenizer="assets/tokenizers/gpt-neox-20b/tokenizer.json"
zo_config="" bp_config="" eval_config="" passkey_config=""
samples="" iterations="" seed="" device="" dtype=""
calib_args="" eval_args="" passkey_args=""
passkey=0 passkey_data="" depths="0,0.25,0.5,0.75,1"
cli="${MX_CLI:-}" mode=run cell_only="" submit=1 sbatch_args=""
replay=()  # the arguments that define the sweep, for the Slurm tasks

need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --models) need "$@"; models="$2" ;;        --lengths) need "$@"; lengths="$2" ;;
    --methods) need "$@"; methods="$2" ;;      --out) need "$@"; out="$2" ;;
    --train) need "$@"; train="$2" ;;          --test) need "$@"; test="$2" ;;
    --tokenizer) need "$@"; tokenizer="$2" ;;  --zo-config) need "$@"; zo_config="$2" ;;
    --bp-config) need "$@"; bp_config="$2" ;;  --eval-config) need "$@"; eval_config="$2" ;;
    --passkey-config) need "$@"; passkey_config="$2" ;;
    --samples) need "$@"; samples="$2" ;;      --iterations) need "$@"; iterations="$2" ;;
    --seed) need "$@"; seed="$2" ;;            --device) need "$@"; device="$2" ;;
    --dtype) need "$@"; dtype="$2" ;;          --calib-args) need "$@"; calib_args="$2" ;;
    --eval-args) need "$@"; eval_args="$2" ;;  --passkey-args) need "$@"; passkey_args="$2" ;;
    --passkey-data) need "$@"; passkey_data="$2" ;;  --depths) need "$@"; depths="$2" ;;
    --cli) need "$@"; cli="$2"; shift 2; continue ;;  # the Slurm script passes it on itself
    --passkey) passkey=1; replay+=("$1"); shift; continue ;;
    --list) mode=list; shift; continue ;;
    --cell) need "$@"; cell_only="$2"; shift 2; continue ;;
    --array-task) [ -n "${SLURM_ARRAY_TASK_ID:-}" ] || die "--array-task: SLURM_ARRAY_TASK_ID is not set"
                  cell_only="$SLURM_ARRAY_TASK_ID"; shift; continue ;;
    --slurm) mode=slurm; shift; continue ;;
    --no-submit) submit=0; shift; continue ;;
    --sbatch-args) need "$@"; sbatch_args="$2"; shift 2; continue ;;
    -h|--help) usage ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  replay+=("$1" "$2")
  shift 2
done
[ -n "$models" ] && [ -n "$lengths" ] && [ -n "$methods" ] && [ -n "$out" ] ||
  die "--models, --lengths, --methods and --out are required (see --help)"
[ -n "$cli" ] || cli="$ROOT/build/mambaextend"
[ -x "$cli" ] || die "the mambaextend binary $cli does not exist (build it: bash scripts/build.sh, or pass --cli)"

IFS=, read -r -a model_list <<<"$models"
IFS=, read -r -a length_list <<<"$lengths"
IFS=, read -r -a method_list <<<"$methods"
for L in "${length_list[@]}"; do [[ "$L" =~ ^[0-9]+$ ]] && [ "$L" -ge 2 ] || die "--lengths: '$L' is not a context length"; done
for m in "${method_list[@]}"; do
  case "$m" in vanilla|zo|bp) ;; *) die "--methods: '$m' is not one of vanilla, zo, bp" ;; esac
done
declare -A seen_name=()
for d in "${model_list[@]}"; do
  [ -d "$d" ] || die "--models: $d is not a directory"
  case "$d" in *'"'*|*'\'*) die "--models: '$d' contains a quote or a backslash (it is written into cell.json)" ;; esac
  name="$(basename "$d")"
  [ -z "${seen_name[$name]:-}" ] || die "--models: two models are named $name (cells are keyed by the directory name)"
  seen_name[$name]=1
done

# The cell table: index -> model dir, length, method.
cell_model=() cell_length=() cell_method=()
for d in "${model_list[@]}"; do
  for L in "${length_list[@]}"; do
    for m in "${method_list[@]}"; do cell_model+=("$d"); cell_length+=("$L"); cell_method+=("$m"); done
  done
done
ncells=${#cell_model[@]}
cell_dir() { echo "$out/$(basename "${cell_model[$1]}")/L${cell_length[$1]}/${cell_method[$1]}"; }

if [ "$mode" = list ]; then
  for ((i = 0; i < ncells; i++)); do
    printf '%d\t%s\t%s\t%s\t%s\n' "$i" "$(basename "${cell_model[$i]}")" "${cell_length[$i]}" "${cell_method[$i]}" "$(cell_dir "$i")"
  done
  exit 0
fi

mkdir -p "$out"
if [ "$mode" = slurm ]; then
  script="$out/sweep.sbatch"
  {
    echo "#!/usr/bin/env bash"
    echo "# Written by scripts/sweep.sh --slurm: one array task per cell (0..$((ncells - 1)), see sweep.sh --list)."
    echo "#SBATCH --job-name=mx-sweep"
    echo "#SBATCH --array=0-$((ncells - 1))"
    echo "#SBATCH --output=$out/slurm-%A_%a.out"
    for a in $sbatch_args; do echo "#SBATCH $a"; done
    echo "set -euo pipefail"
    printf 'cd %q\n' "$PWD"
    printf 'exec bash %q' "$SELF"
    printf ' %q' "${replay[@]}" --cli "$cli"
    echo " --array-task"
  } > "$script.tmp.$$"
  mv -f "$script.tmp.$$" "$script"
  echo "sweep: wrote $script ($ncells array tasks)" >&2
  if [ "$submit" = 1 ] && command -v sbatch >/dev/null 2>&1; then
    sbatch "$script"
  elif [ "$submit" = 1 ]; then
    echo "sweep: sbatch not found; submit it on the cluster with: sbatch $script" >&2
  fi
  exit 0
fi

if [ -n "$cell_only" ]; then
  [[ "$cell_only" =~ ^[0-9]+$ ]] && [ "$cell_only" -lt "$ncells" ] ||
    die "cell index '$cell_only' is not in 0..$((ncells - 1)) (see --list)"
  selected=("$cell_only")
else
  selected=($(seq 0 $((ncells - 1))))
fi

common=(--tokenizer "$tokenizer")
[ -n "$device" ] && common+=(--device "$device")
[ -n "$dtype" ] && common+=(--dtype "$dtype")

# Runs one command of a cell with its output appended to the cell's log.
run_logged() {
  local log="$1"; shift
  { echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $*"; } >>"$log"
  "$@" >>"$log" 2>&1
}

write_cell_json() {  # atomically: temporary file, then rename
  local i="$1" dir="$2"
  printf '{"format": "mambaextend.sweep-cell/v1", "index": %d, "model": "%s", "model_dir": "%s", "length": %d, "method": "%s"}\n' \
    "$i" "$(basename "${cell_model[$i]}")" "${cell_model[$i]}" "${cell_length[$i]}" "${cell_method[$i]}" >"$dir/.cell.json.tmp"
  mv -f "$dir/.cell.json.tmp" "$dir/cell.json"
}

# Returns 0 finished, 1 failed, 3 stopped before the end (calibration state saved).
run_cell() {
  local i="$1" dir model L m log
  dir="$(cell_dir "$i")" model="${cell_model[$i]}" L="${cell_length[$i]}" m="${cell_method[$i]}"
  mkdir -p "$dir"
  log="$dir/cell.log"
  write_cell_json "$i" "$dir"
  local factors=()
  if [ "$m" != vanilla ]; then
    if [ ! -f "$dir/factors.json" ]; then
      local cmd=("$cli" calibrate --model "$model" --data "$train" "${common[@]}" --length "$L" --method "$m"
                 --out "$dir/factors.json" --resume)
      [ "$m" = zo ] && [ -n "$zo_config" ] && cmd+=(--config "$zo_config")
      [ "$m" = bp ] && [ -n "$bp_config" ] && cmd+=(--config "$bp_config")
      [ -n "$samples" ] && cmd+=(--samples "$samples")
      [ -n "$iterations" ] && cmd+=(--iterations "$iterations")
      [ -n "$seed" ] && cmd+=(--seed "$seed")
      # shellcheck disable=SC2206
      [ -n "$calib_args" ] && cmd+=($calib_args)
      if [ -f "$dir/factors.json.state.json" ]; then
        echo "  resuming the calibration from $dir/factors.json.state.json" >&2
        echo "# resuming from factors.json.state.json" >>"$log"
      fi
      run_logged "$log" "${cmd[@]}" || return 1
      if [ ! -f "$dir/factors.json" ]; then
        echo "  calibration stopped before the end (state in $dir/factors.json.state.json); rerun to resume" >&2
        return 3
      fi
    fi
    factors=(--factors "$dir/factors.json")
  fi
  if [ ! -f "$dir/ppl.json" ]; then
    local cmd=("$cli" eval-ppl --model "$model" --data "$test" "${common[@]}" --lengths "$L" "${factors[@]}"
               --out "$dir/ppl.json")
    [ -n "$eval_config" ] && cmd+=(--config "$eval_config")
    # shellcheck disable=SC2206
    [ -n "$eval_args" ] && cmd+=($eval_args)
    run_logged "$log" "${cmd[@]}" || return 1
  fi
  if [ "$passkey" = 1 ] && [ ! -f "$dir/passkey.json" ]; then
    local cmd=("$cli" passkey --model "$model" --data "${passkey_data:-$test}" "${common[@]}" --lengths "$L"
               --depths "$depths" "${factors[@]}" --out "$dir/passkey.json" --heatmap "$dir/passkey.svg")
    [ -n "$passkey_config" ] && cmd+=(--config "$passkey_config")
    # shellcheck disable=SC2206
    [ -n "$passkey_args" ] && cmd+=($passkey_args)
    run_logged "$log" "${cmd[@]}" || return 1
  fi
  return 0
}

is_finished() {
  local dir
  dir="$(cell_dir "$1")"
  [ -f "$dir/ppl.json" ] && { [ "$passkey" = 0 ] || [ -f "$dir/passkey.json" ]; }
}

t0=$SECONDS
ran=0 skipped=0 failed=0 stopped=0
failed_cells=()
for i in "${selected[@]}"; do
  label="cell $i ($(basename "${cell_model[$i]}") L=${cell_length[$i]} ${cell_method[$i]})"
  if is_finished "$i"; then
    echo "$label: finished before, skipped" >&2
    skipped=$((skipped + 1))
    continue
  fi
  echo "$label: running (log: $(cell_dir "$i")/cell.log)" >&2
  t_cell=$SECONDS
  rc=0
  run_cell "$i" || rc=$?
  ran=$((ran + 1))
  case $rc in
    0) echo "$label: done in $((SECONDS - t_cell)) s" >&2 ;;
    3) stopped=$((stopped + 1)) ;;
    *) failed=$((failed + 1)); failed_cells+=("$i")
       echo "$label: FAILED; last lines of $(cell_dir "$i")/cell.log:" >&2
       tail -n 3 "$(cell_dir "$i")/cell.log" | sed 's/^/    /' >&2 ;;
  esac
done
echo "sweep: ${#selected[@]} cells: ran $ran, skipped $skipped (finished before), stopped $stopped, failed $failed" \
     "in $((SECONDS - t0)) s; results in $out" >&2
[ "$failed" -eq 0 ] || { echo "sweep: failed cells: ${failed_cells[*]}" >&2; exit 1; }
[ "$stopped" -eq 0 ] || exit 3
exit 0
