#!/usr/bin/env bash
# The GPU check in one prepared go, for a machine with a CUDA device and PyTorch + transformers:
# the card, bench/gpu.py (table and JSON), then the steering and capture tests in bf16 on CUDA.
# Everything goes to $OUT (default bench/results).   OUT=somewhere bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
PY=${PY:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
PYTHONUNBUFFERED=1 "$PY" bench/gpu.py --out "$OUT" 2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}
# the SmolLM2 tests need the embedded model's wheel, which a GPU image may lack: the tiny models cover the paths
REBALANCE_TEST_DEVICE=cuda REBALANCE_TEST_DTYPE=bfloat16 "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_steering.py tests/test_collect.py -k "not smollm2" 2>&1 | tee "$OUT/tests.log"
tests=${PIPESTATUS[0]}
echo "bench exit $bench, tests exit $tests"
exit $(( bench || tests ))
