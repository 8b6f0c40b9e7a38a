#!/usr/bin/env bash
# Creates .venv (if missing) and installs openood-immuno with its test extra.
# torch/torchvision are pinned to the builds this workplace serves from local disk.
# EDITABLE=1 installs in development mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's exit status is kept; only the local index's noise is filtered out.
pipq() { .venv/bin/python -m pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
pipq --upgrade pip setuptools wheel
pipq "torch==2.14.1" "torchvision==0.29.1"
if [ "${EDITABLE:-0}" = 1 ]; then
  pipq -e ".[test]"
else
  pipq --force-reinstall --no-deps .
  pipq ".[test]"
fi
.venv/bin/python -c "import openood_immuno, open_clip, torch; print('openood-immuno', openood_immuno.__version__, 'torch', torch.__version__)"
