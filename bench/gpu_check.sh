#!/usr/bin/env bash
# The one-shot GPU check, for a machine lent with a CUDA device for a few minutes: a trustworthy answer
# within 8 minutes, the most valuable part first, each part under its own time limit, and everything
# it has written to $OUT after every part, so a run that is cut off still returns figures.
#   1 correct  the engine in fp32 and bf16, eager and compiled, against the CPU fp32 reference (90 s)
#   2 greedy   the 1.5B shape at batch 64, 16, 1: plain generate, transformers' continuous batching with
#              and without CUDA graphs, the engine unsteered, steered and collecting, eager and compiled,
#              with each row's share of the bandwidth floor (240 s)
#   3 long     8,192-token prompts (60 s)
#   4 sampled  T 0.7, top-p 0.95 at batch 64 (60 s)
#   5 ragged   long-tailed lengths, in-flight against static batches (45 s)
# then the table of everything measured (gpu_r1-1.5b.txt, .json; rows in .jsonl as they came).
#   OUT=results bash bench/gpu_check.sh            # on the GPU machine
#   REHEARSE=1 OUT=/tmp/x bash bench/gpu_check.sh  # the same parts on the CPU at a tiny shape (make test)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
PY=${PY:-python3}
SCALE=${SCALE:-1}  # multiplies every part's limit (a slow machine, a rehearsal)
mkdir -p "$OUT"
: >"$OUT/parts.txt"
if [ -n "${REHEARSE:-}" ]; then  # tracing without inductor's code generation: the script's logic, in seconds
  correct=(--device cpu --archs qwen2 --compile_backend aot_eager); bench=(--rehearse)
else
  correct=(--device cuda); bench=(--new_tokens 256)
fi

part() {  # part NAME SECONDS COMMAND...: run it under its limit, its output in $OUT/NAME.log
  local name=$1 limit=$(( $2 * SCALE )) start=$SECONDS rc
  shift 2
  PYTHONUNBUFFERED=1 timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc after $(( SECONDS - start )) s (limit $limit s)" | tee -a "$OUT/parts.txt"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
} >"$OUT/gpu.txt" 2>&1
part correct 90 "$PY" bench/gpu_correct.py "${correct[@]}" --out "$OUT"
part greedy 240 "$PY" bench/gpu.py "${bench[@]}" --parts greedy --fresh --out "$OUT"
part long 60 "$PY" bench/gpu.py "${bench[@]}" --parts long --out "$OUT"
part sampled 60 "$PY" bench/gpu.py "${bench[@]}" --parts sampled --out "$OUT"
part ragged 45 "$PY" bench/gpu.py "${bench[@]}" --parts ragged --out "$OUT"
"$PY" bench/gpu.py "${bench[@]}" --report --out "$OUT" | tee "$OUT/table.txt"
cat "$OUT/parts.txt"
! grep -qv "exit 0 " "$OUT/parts.txt"  # the check's own exit: 0 when every part finished and passed
