#!/usr/bin/env bash
# The pipeline on the embedded default model (SmolLM2-135M-Instruct, CPU): every stage that exists.
set -euo pipefail
PY=${PY:-python}
OUT=${OUT:-demo_out}
MAXLEN=${MAXLEN:-160}
"$PY" -m rebalance.demo_data --out "$OUT/Data" --seen 12 --heldout 12
echo "== stage 1: collection on the seen set (2 CPU workers)"
"$PY" transformer_inference_dp.py --model_name_or_path embedded --dataset_dir "$OUT/Data" --dataset Demo_Seen \
  --output_path "$OUT/runs" --max_generated_tokens "$MAXLEN" --batch_size 4 --num_gpus 2
"$PY" merge_shards.py --dir "$OUT/runs/SmolLM2-135M-Instruct/Demo_Seen" --base "origin_temp0.0_maxlen$MAXLEN" --expected 12
echo "== stage 4 (baseline): unsteered run on the held-out set"
"$PY" transformer_inference_steer_dp.py --model_name_or_path embedded --dataset_dir "$OUT/Data" --dataset Demo_Heldout \
  --output_path "$OUT/runs" --max_generated_tokens "$MAXLEN" --batch_size 4 --num_gpus 2 --steer_mode off --temperature 0
"$PY" merge_shards.py --dir "$OUT/runs/SmolLM2-135M-Instruct/Demo_Heldout" --base "baseline_temp0.0_maxlen$MAXLEN" --expected 12
