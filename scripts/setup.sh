#!/usr/bin/env bash
# Create .venv and install arcnn with what the README's commands run: the worker extra for
# `make sample` (it runs `arcnn run`), every extra plus the test tools when called with "test".
# Idempotent.
# torch is installed first, pinned to the CPU build this platform provides; the project's
# dependency range (torch>=2.3,<2.15) then installs nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "test" ]; then
    .venv/bin/python -m pip install -q -e ".[all,test]"
else
    .venv/bin/python -m pip install -q -e ".[worker]"
fi
