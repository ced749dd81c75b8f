#!/usr/bin/env bash
# scripts/sweep.sh on the bundled organism with tiny settings (2 lengths × {vanilla, zo}, 1 window, 2 SPSA
# iterations):
#   1. a first run whose calibrations stop after one iteration (--max-iterations-this-run 1) leaves the zo
#      cells unfinished with their state files (exit 3) and the vanilla cells finished;
#   2. a second run resumes those calibrations (calibrate --resume) and finishes every cell (exit 0);
#   3. a third run does no work: every cell is skipped and no file under the results directory changes;
#   4. --slurm writes an array job of one task per cell, and the per-task entry point (--array-task with
#      SLURM_ARRAY_TASK_ID) runs exactly the cell --list gives that index; an index out of range is refused;
#   5. --passkey adds the passkey grid to finished cells without redoing their calibration or evaluation;
#   6. `mambaextend report` on the results makes the tables and the figures.
# Environment: MX_CLI (the mambaextend binary), MX_SOURCE_DIR (the repository).
set -euo pipefail
SRC="${MX_SOURCE_DIR:?MX_SOURCE_DIR is not set}"
CLI="${MX_CLI:?MX_CLI is not set}"
cd "$SRC"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/mx_sweep.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
RUNS="$TMP/runs"
fail() { echo "FAIL: $*" >&2; exit 1; }
args=(--cli "$CLI" --models assets/models/organism-mamba1-7m --lengths 256,512 --methods vanilla,zo --out "$RUNS"
      --samples 1 --iterations 2 --seed 0 --eval-args "--max-docs 1 --windows-per-doc 1 --pred-len 50")
M="$RUNS/organism-mamba1-7m"

# 1. Calibrations stop after one iteration.
rc=0
bash scripts/sweep.sh "${args[@]}" --calib-args "--max-iterations-this-run 1" 2> "$TMP/run1.err" || rc=$?
[ "$rc" = 3 ] || { cat "$TMP/run1.err" >&2; fail "run 1: exit $rc, expected 3 (calibrations stopped)"; }
for L in 256 512; do
  [ -f "$M/L$L/vanilla/ppl.json" ] || fail "run 1: no $M/L$L/vanilla/ppl.json"
  [ -f "$M/L$L/zo/factors.json.state.json" ] || fail "run 1: no calibration state in $M/L$L/zo"
  [ ! -f "$M/L$L/zo/factors.json" ] && [ ! -f "$M/L$L/zo/ppl.json" ] || fail "run 1: zo L=$L finished early"
  [ -f "$M/L$L/zo/cell.log" ] && [ -f "$M/L$L/zo/cell.json" ] || fail "run 1: no cell.log / cell.json in $M/L$L/zo"
done

# 2. Resume and finish.
bash scripts/sweep.sh "${args[@]}" 2> "$TMP/run2.err" || { cat "$TMP/run2.err" >&2; fail "run 2 failed"; }
grep -q "ran 2, skipped 2" "$TMP/run2.err" || { cat "$TMP/run2.err" >&2; fail "run 2 did not run exactly the 2 zo cells"; }
for L in 256 512; do
  grep -q "resuming from .*factors.json.state.json after iteration 1" "$M/L$L/zo/cell.log" ||
    fail "run 2: the L=$L calibration did not resume from its state (see $M/L$L/zo/cell.log)"
  [ -f "$M/L$L/zo/ppl.json" ] || fail "run 2: no $M/L$L/zo/ppl.json"
  iters=$(grep -c '"iter"' "$M/L$L/zo/factors.json" || true)
  [ "$iters" -ge 2 ] || fail "run 2: factors.json of L=$L holds $iters iterations, expected the 2 of both runs"
done

# 3. Nothing to do: every cell skipped, no file touched.
find "$RUNS" -type f -exec sha256sum {} + | sort > "$TMP/before"
touch "$TMP/stamp"
sleep 1
bash scripts/sweep.sh "${args[@]}" 2> "$TMP/run3.err" || { cat "$TMP/run3.err" >&2; fail "run 3 failed"; }
grep -q "ran 0, skipped 4" "$TMP/run3.err" || { cat "$TMP/run3.err" >&2; fail "run 3 did work"; }
find "$RUNS" -type f -exec sha256sum {} + | sort > "$TMP/after"
cmp -s "$TMP/before" "$TMP/after" || { diff "$TMP/before" "$TMP/after" >&2; fail "run 3 changed files"; }
[ -z "$(find "$RUNS" -newer "$TMP/stamp" -print -quit)" ] || fail "run 3 wrote into $RUNS"

# 4. Slurm array mode without Slurm: the script, then the per-task entry point.
bash scripts/sweep.sh "${args[@]}" --slurm --no-submit --sbatch-args "--time=01:00:00" 2> "$TMP/slurm.err"
grep -q '^#SBATCH --array=0-3$' "$RUNS/sweep.sbatch" || fail "sweep.sbatch: no array of 4 tasks"
grep -q '^#SBATCH --time=01:00:00$' "$RUNS/sweep.sbatch" || fail "sweep.sbatch: --sbatch-args missing"
grep -q -- '--array-task$' "$RUNS/sweep.sbatch" || fail "sweep.sbatch: the tasks do not run --array-task"
bash scripts/sweep.sh "${args[@]}" --list > "$TMP/list"
[ "$(wc -l < "$TMP/list")" = 4 ] || fail "--list: $(wc -l < "$TMP/list") cells, expected 4"
for task in 1 2; do
  dir="$(awk -F'\t' -v t="$task" '$1 == t {print $5}' "$TMP/list")"
  [ -n "$dir" ] || fail "--list has no cell $task"
  rm -f "$dir/ppl.json"
  find "$RUNS" -name ppl.json | sort > "$TMP/others"
  if [ "$task" = 1 ]; then  # the generated job script itself, as Slurm would run it
    SLURM_ARRAY_TASK_ID=$task bash "$RUNS/sweep.sbatch" 2> "$TMP/task.err" ||
      { cat "$TMP/task.err" >&2; fail "sweep.sbatch as array task $task failed"; }
  else
    SLURM_ARRAY_TASK_ID=$task bash scripts/sweep.sh "${args[@]}" --array-task 2> "$TMP/task.err" ||
      { cat "$TMP/task.err" >&2; fail "array task $task failed"; }
  fi
  grep -q "^cell $task " "$TMP/task.err" || fail "array task $task did not report cell $task"
  grep -q "ran 1, skipped 0" "$TMP/task.err" || { cat "$TMP/task.err" >&2; fail "array task $task ran other cells"; }
  [ -f "$dir/ppl.json" ] || fail "array task $task did not redo $dir"
  [ "$(find "$RUNS" -name ppl.json -newer "$TMP/stamp" | wc -l)" -ge 1 ] || fail "array task $task wrote nothing"
done
rc=0
SLURM_ARRAY_TASK_ID=4 bash scripts/sweep.sh "${args[@]}" --array-task 2> "$TMP/bad.err" || rc=$?
[ "$rc" = 2 ] && grep -q "not in 0..3" "$TMP/bad.err" || fail "array task 4 of 4 cells: exit $rc, expected 2"

# 5. Passkey on request: finished cells lack passkey.json, so each runs the passkey grid and nothing else.
find "$RUNS" -name factors.json -o -name ppl.json | xargs sha256sum | sort > "$TMP/before_pk"
bash scripts/sweep.sh "${args[@]}" --passkey --depths 0.5 --passkey-args "--seed 3" 2> "$TMP/pk.err" ||
  { cat "$TMP/pk.err" >&2; fail "the passkey run failed"; }
grep -q "ran 4, skipped 0" "$TMP/pk.err" || { cat "$TMP/pk.err" >&2; fail "the passkey run did not visit the 4 cells"; }
find "$RUNS" -name factors.json -o -name ppl.json | xargs sha256sum | sort > "$TMP/after_pk"
cmp -s "$TMP/before_pk" "$TMP/after_pk" || fail "the passkey run redid calibrations or evaluations"
for L in 256 512; do
  for m in vanilla zo; do
    [ -f "$M/L$L/$m/passkey.json" ] && [ -f "$M/L$L/$m/passkey.svg" ] || fail "no passkey.json/svg in $M/L$L/$m"
  done
  grep -q -- "--factors $M/L$L/zo/factors.json" "$M/L$L/zo/cell.log" || fail "zo passkey without the cell's factors"
done
bash scripts/sweep.sh "${args[@]}" --passkey --depths 0.5 2> "$TMP/pk2.err"
grep -q "ran 0, skipped 4" "$TMP/pk2.err" || fail "a second passkey run did work"

# 6. The report.
"$CLI" --log-level warn report --runs "$RUNS" --out "$TMP/report" > "$TMP/table.md"
grep -q '^| model | length | vanilla | zo | zo vs vanilla |$' "$TMP/table.md" || fail "report: no vanilla/zo table"
[ "$(grep -c '^| organism-mamba1-7m | [0-9]' "$TMP/table.md")" = 2 ] || fail "report: expected 2 rows (L=256, 512)"
[ -s "$TMP/report/ppl_pg19.svg" ] && [ -s "$TMP/report/report.md" ] || fail "report: missing figure or report.md"
grep -q '^| model | method | 256 | 512 | all |$' "$TMP/table.md" || fail "report: no passkey table"
[ "$(grep -c '^| organism-mamba1-7m | \(vanilla\|zo\) | ' "$TMP/table.md")" = 2 ] || fail "report: passkey rows"
[ -s "$TMP/report/passkey_organism-mamba1-7m.svg" ] || fail "report: no passkey heatmap"
echo "test_sweep: resume, skip, Slurm task mapping and report all good"
