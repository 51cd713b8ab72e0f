#!/usr/bin/env bash
# Set up .venv/ from uv.lock on a fresh machine: find Python 3.12, install the pinned uv into the venv,
# then `uv sync --frozen` (exact versions from the lock file). Idempotent and fast when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9

find_python312() {
  local candidates=()
  [ -n "${PYTHON312:-}" ] && candidates+=("$PYTHON312")
  candidates+=(python3.12)
  for d in "$HOME"/.pyenv/versions/3.12*/bin /usr/local/bin /usr/bin; do
    [ -x "$d/python3.12" ] && candidates+=("$d/python3.12")
  done
  for c in "${candidates[@]}"; do
    # pyenv shims exist even when the version is not selected; only accept one that runs
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      command -v "$c" 2>/dev/null || echo "$c"
      return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/uv ] || ! .venv/bin/uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
  PY=$(find_python312) || { echo "error: Python 3.12 not found (set PYTHON312=/path/to/python3.12)" >&2; exit 1; }
  echo "bootstrap: creating .venv with $PY"
  rm -rf .venv
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# torch 2.14.1 is the CUDA build from PyPI (it runs on CPU); uv does not read pip's constraint files.
.venv/bin/uv sync --frozen --python .venv/bin/python --quiet
