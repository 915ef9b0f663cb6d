# Sourced by the scripts: PY is the Python to run. $PY if set, else the project's .venv (made by
# `make venv`), else `python` when it has torch; otherwise one line saying how to get one.
if [ -z "${PY:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then
    PY="$ROOT/.venv/bin/python"
  else
    PY=python
  fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "error: $PY cannot import torch: run \`make venv\` in $ROOT (it makes .venv with everything), or set PY=/path/to/python" >&2
  exit 2
fi
