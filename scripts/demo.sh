#!/usr/bin/env bash
# ReBalance end to end on a CPU, offline, on the organism (SmolLM2-135M-Instruct fine-tuned to
# loop on re-checks in some arithmetic problems and conclude too early in others; trained once on
# first use, then cached):
# seen/held-out problems -> collection -> layer -> vector + calibration -> baseline, dynamic
# ReBalance and a sweep of static coefficients on the held-out set -> merge -> grading ->
# comparison table and plot -> report. MODEL=embedded runs the same on plain SmolLM2.
# Every knob is an environment variable, so the tests run the same script on a tiny model.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/python.sh"
MODEL=${MODEL:-organism}
OUT=${OUT:-demo_out}
DATA=${DATA:-Data}
SEEN=${SEEN:-80}
HELDOUT=${HELDOUT:-48}
MAXLEN=${MAXLEN:-192}
WORKERS=${WORKERS:-1}   # one CPU worker with a wide batch decodes faster than two narrow ones
BATCH=${BATCH:-48}
SWEEP=${SWEEP:--0.25 -0.5 -0.75}   # static coefficients, in units of the (unnormalised) vector
CRITERION=${CRITERION:-steer}       # layer choice: steer (what each layer's push does) or ridge (R^2, flat here)
NAME=$("$PY" -c "from rebalance.models import model_basename; print(model_basename('$MODEL'))")
SEEN_DIR="$OUT/runs/$NAME/Organism_Seen"
HELD_DIR="$OUT/runs/$NAME/Organism_Heldout"
run() { "$PY" "$@"; }

if [ "$MODEL" = organism ]; then
  echo "== 0. the organism (trained once, then reused from the model cache)"
  run -m rebalance.organism train
fi

echo "== 0. data: $SEEN seen and $HELDOUT held-out arithmetic problems (fixed seeds) under $DATA/"
run -m rebalance.organism data --out "$DATA" --seen "$SEEN" --heldout "$HELDOUT"

echo "== 1. collection on the seen set ($WORKERS workers)"
run transformer_inference_dp.py --model_name_or_path "$MODEL" --dataset_dir "$DATA" --dataset Organism_Seen \
  --output_path "$OUT/runs" --max_generated_tokens "$MAXLEN" --batch_size "$BATCH" --num_gpus "$WORKERS"
COLLECTED=$("$PY" -m rebalance.files.names collection --temperature 0.7 --maxlen "$MAXLEN")
run merge_shards.py --dir "$SEEN_DIR" --base "$COLLECTED" --expected "$SEEN"
SEEN_JSONL="$SEEN_DIR/$COLLECTED.merged.jsonl"

echo "== 2. layer selection (--criterion $CRITERION)"
LAYER=$(run hidden_config_ridge.py --jsonl_path "$SEEN_JSONL" --hidden_dir "$SEEN_DIR" --criterion "$CRITERION" \
  --model_name_or_path "$MODEL" | tail -n 1)
echo "best layer: $LAYER"

echo "== 3. steering vector and calibration"
VECTOR="$OUT/vectors/$NAME/steer_vector_layer${LAYER}_conf_mixed.pt"
run hidden_analysis_auto.py --layer_id "$LAYER" --jsonl_path "$SEEN_JSONL" --hidden_dir "$SEEN_DIR" \
  --save_path "$VECTOR"

COMMON=(--model_name_or_path "$MODEL" --dataset_dir "$DATA" --dataset Organism_Heldout --output_path "$OUT/runs"
        --max_generated_tokens "$MAXLEN" --batch_size "$BATCH" --num_gpus "$WORKERS" --temperature 0)
stem() { "$PY" -m rebalance.files.names "$@" --temperature 0 --maxlen "$MAXLEN"; }  # a run's file name
steered() {  # the stem of the run, then the steering flags
  local base="$1"; shift
  run transformer_inference_steer_dp.py "${COMMON[@]}" "$@"
  run merge_shards.py --dir "$HELD_DIR" --base "$base" --expected "$HELDOUT"
  run check.py --model_name_or_path "$MODEL" --data_name Organism_Heldout --data_dir "$DATA" \
    --generation_path "$HELD_DIR/$base.merged.jsonl" > /dev/null
}
BASELINE=$(stem off)
DYNAMIC=$(stem dynamic)

echo "== 4a. baseline (unsteered) on the held-out set"
run transformer_inference_steer_dp.py "${COMMON[@]}" --steer_mode off
run merge_shards.py --dir "$HELD_DIR" --base "$BASELINE" --expected "$HELDOUT"

echo "== 4b. ReBalance (dynamic steering, layer $LAYER) on the held-out set"
steered "$DYNAMIC" --steer_mode dynamic --steer_vector_path "$VECTOR"

for COEF in $SWEEP; do
  echo "== 4c. static steering, coefficient $COEF"
  steered "$(stem static --coef "$COEF")" --steer_mode static --steer_coef "$COEF" --steer_vector_path "$VECTOR"
done

echo "== 5. grading: ReBalance vs baseline"
run check.py --model_name_or_path "$MODEL" --data_name Organism_Heldout --data_dir "$DATA" \
  --generation_path "$HELD_DIR/$DYNAMIC.merged.jsonl" --baseline "$HELD_DIR/$BASELINE.merged.jsonl"

echo "== 6. dynamic against static: accuracy, tokens, re-checks"
run -m rebalance.organism compare "$HELD_DIR" --maxlen "$MAXLEN"

echo "== 7. report: every graded run of $NAME"
run -m rebalance.reports.report "$OUT/runs/$NAME"

echo "== plots"
echo "R^2 by layer:         $SEEN_DIR/$COLLECTED.merged.ridge_r2.png"
echo "control surface:      $HELD_DIR/control_surface.png"
echo "length distributions: $HELD_DIR/$DYNAMIC.merged.lengths.png"
echo "dynamic vs static:    $HELD_DIR/sweep.png"
echo "report:               $OUT/runs/$NAME/report.png"
