#!/usr/bin/env bash
# Creates .venv (if missing) and installs openood-immuno with its test extra.
# torch/torchvision are pinned to the builds this workplace serves from local disk.
# EDITABLE=1 installs in development mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v "^WARNING: Location" || true
if [ "${EDITABLE:-0}" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
else
  .venv/bin/python -m pip install -q --force-reinstall --no-deps . 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import openood_immuno, open_clip, torch; print('openood-immuno', openood_immuno.__version__, 'torch', torch.__version__)"
