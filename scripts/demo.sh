#!/usr/bin/env bash
# ReBalance end to end on a CPU, offline, on the organism (`make demo`): the stages of
# `python -m rebalance.organism demo` (rebalance/organism/demo.py). Every knob is an environment
# variable, so the tests run the same script on a tiny model; MODEL=embedded runs plain SmolLM2.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/python.sh"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m rebalance.organism demo \
  --model "${MODEL:-organism}" --out "${OUT:-demo_out}" --data "${DATA:-Data}" --seen "${SEEN:-80}" \
  --heldout "${HELDOUT:-48}" --maxlen "${MAXLEN:-192}" --workers "${WORKERS:-1}" --batch_size "${BATCH:-48}" \
  --sweep="${SWEEP:--0.25 -0.5 -0.75}" --criterion "${CRITERION:-steer}"
