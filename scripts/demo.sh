#!/usr/bin/env bash
# ReBalance end to end on the embedded default (SmolLM2-135M-Instruct, CPU), offline:
# seen/held-out arithmetic sets -> collection -> layer -> vector + calibration -> baseline and
# ReBalance runs on the held-out set -> merge -> check.py --baseline -> report.
# Every knob is an environment variable, so the tests run the same script on a tiny model.
set -euo pipefail
PY=${PY:-python}
MODEL=${MODEL:-embedded}
OUT=${OUT:-demo_out}
DATA=${DATA:-Data}
SEEN=${SEEN:-48}
HELDOUT=${HELDOUT:-40}
MAXLEN=${MAXLEN:-256}
WORKERS=${WORKERS:-2}
BATCH=${BATCH:-6}
NAME=$("$PY" -c "from rebalance.models import model_basename; print(model_basename('$MODEL'))")
SEEN_DIR="$OUT/runs/$NAME/Demo_Seen"
HELD_DIR="$OUT/runs/$NAME/Demo_Heldout"
run() { "$PY" "$@"; }

echo "== 0. data: $SEEN seen and $HELDOUT held-out arithmetic problems (fixed seeds) under $DATA/"
run -m rebalance.demo_data --out "$DATA" --seen "$SEEN" --heldout "$HELDOUT"

echo "== 1. collection on the seen set ($WORKERS workers)"
run transformer_inference_dp.py --model_name_or_path "$MODEL" --dataset_dir "$DATA" --dataset Demo_Seen \
  --output_path "$OUT/runs" --max_generated_tokens "$MAXLEN" --batch_size "$BATCH" --num_gpus "$WORKERS"
run merge_shards.py --dir "$SEEN_DIR" --base "origin_temp0.7_maxlen$MAXLEN" --expected "$SEEN"
SEEN_JSONL="$SEEN_DIR/origin_temp0.7_maxlen$MAXLEN.merged.jsonl"

echo "== 2. layer selection"
LAYER=$(run hidden_config_ridge.py --jsonl_path "$SEEN_JSONL" --hidden_dir "$SEEN_DIR" | tail -n 1)
echo "best layer: $LAYER"

echo "== 3. steering vector and calibration"
VECTOR="$OUT/vectors/$NAME/steer_vector_layer${LAYER}_conf_mixed.pt"
run hidden_analysis_auto.py --layer_id "$LAYER" --jsonl_path "$SEEN_JSONL" --hidden_dir "$SEEN_DIR" \
  --save_path "$VECTOR"

COMMON=(--model_name_or_path "$MODEL" --dataset_dir "$DATA" --dataset Demo_Heldout --output_path "$OUT/runs"
        --max_generated_tokens "$MAXLEN" --batch_size "$BATCH" --num_gpus "$WORKERS" --temperature 0)
echo "== 4a. baseline (unsteered) on the held-out set"
run transformer_inference_steer_dp.py "${COMMON[@]}" --steer_mode off
run merge_shards.py --dir "$HELD_DIR" --base "baseline_temp0.0_maxlen$MAXLEN" --expected "$HELDOUT"

echo "== 4b. ReBalance (dynamic steering, layer $LAYER) on the held-out set"
run transformer_inference_steer_dp.py "${COMMON[@]}" --steer_mode dynamic --steer_vector_path "$VECTOR"
run merge_shards.py --dir "$HELD_DIR" --base "steer_temp0.0_maxlen$MAXLEN" --expected "$HELDOUT"

echo "== 5. grading: ReBalance vs baseline"
run check.py --model_name_or_path "$MODEL" --data_name Demo_Heldout --data_dir "$DATA" \
  --generation_path "$HELD_DIR/steer_temp0.0_maxlen$MAXLEN.merged.jsonl" \
  --baseline "$HELD_DIR/baseline_temp0.0_maxlen$MAXLEN.merged.jsonl"

echo "== 6. report: every graded run of $NAME"
run -m rebalance.report "$OUT/runs/$NAME"

echo "== plots"
echo "R^2 by layer:         $SEEN_DIR/origin_temp0.7_maxlen$MAXLEN.merged.ridge_r2.png"
echo "control surface:      $HELD_DIR/control_surface.png"
echo "length distributions: $HELD_DIR/steer_temp0.0_maxlen$MAXLEN.merged.lengths.png"
echo "report:               $OUT/runs/$NAME/report.png"
