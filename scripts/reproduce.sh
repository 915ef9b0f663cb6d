#!/usr/bin/env bash
# The paper's table for one model: baseline and ReBalance on every benchmark (or --benchmarks),
# merged, graded, and a report beside the paper's numbers. Run it again after any interruption:
# finished stages are skipped, partial runs resume. All flags: scripts/reproduce.sh --help
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/python.sh"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m rebalance.reproduce "$@"
