"""``python -m openood_immuno.cli``: the ``openood-immuno`` console command."""
import sys

from .main import run

sys.exit(run())
