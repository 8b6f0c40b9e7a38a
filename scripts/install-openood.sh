#!/usr/bin/env bash
# Install OpenOOD v1.5 (not on PyPI) into this project's venv, with the pins that work on Python 3.11.
#
#   bash scripts/install-openood.sh [SOURCE]
#
# SOURCE: a git URL (default: OpenOOD's repository) or the path of a local OpenOOD checkout.
# The venv is $OPENOOD_IMMUNO_VENV if set, else the project's .venv (made by scripts/install.sh);
# it must already hold torch and torchvision. OpenOOD itself is installed without its declared
# dependencies (they name faiss-gpu, opencv-python and pre-commit); the modules it really imports
# are installed here instead:
#   numpy<2                     OpenOOD v1.5 uses numpy 1 APIs;
#   opencv-python-headless<5    what imgaug and OpenOOD import as cv2, without numpy 2;
#   timm                        openood/attacks/misc.py; json5, diffdist, statsmodels, gdown, foolbox,
#                               faiss-cpu, pandas: imported by OpenOOD's modules, mostly undeclared;
#   imgaug --no-deps            its own requirements pull numpy 2 and a new opencv-python;
#   libmr --no-build-isolation  its setup.py needs Cython and numpy at build time.
# The install is checked by importing openood.evaluation_api and OpenOOD's test pipelines.
set -euo pipefail

SOURCE="${1:-https://github.com/Jingkang50/OpenOOD}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${OPENOOD_IMMUNO_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "install-openood.sh: no Python at $PY: run scripts/install.sh first, or set OPENOOD_IMMUNO_VENV to a venv" >&2
    exit 2
fi
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    echo "install-openood.sh: $VENV has no torch/torchvision: install them (or this project) first" >&2
    exit 2
fi
if [ -d "$SOURCE" ]; then
    if [ ! -f "$SOURCE/openood/evaluation_api/__init__.py" ]; then
        echo "install-openood.sh: $SOURCE is not an OpenOOD checkout (no openood/evaluation_api/)" >&2
        exit 2
    fi
    TARGET="$(cd "$SOURCE" && pwd)"
else
    TARGET="git+$SOURCE"
fi

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf '%s\n' 'numpy<2' 'opencv-python-headless<5' > "$CONSTRAINTS"
pip_install() { "$PY" -m pip install -q -c "$CONSTRAINTS" "$@"; }

pip_install 'numpy<2' 'opencv-python-headless<5' Cython setuptools wheel
pip_install timm json5 faiss-cpu diffdist statsmodels gdown foolbox pandas scikit-learn scipy \
    matplotlib tqdm 'pyyaml>=5.4.1' scikit-image imageio shapely six
pip_install --no-deps 'imgaug>=0.4.0'
pip_install --no-build-isolation libmr
pip_install --no-deps "$TARGET"

"$PY" - <<'EOF'
import numpy
import openood.evaluation_api  # noqa: F401
from openood.pipelines import test_ood_pipeline  # noqa: F401
from openood.networks import utils  # noqa: F401

assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__} was pulled in; OpenOOD v1.5 needs numpy<2"
print(f"OpenOOD installed: openood.evaluation_api imports (numpy {numpy.__version__})")
EOF
