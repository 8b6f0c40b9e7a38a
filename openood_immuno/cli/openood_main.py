"""``openood-immuno openood-main``: OpenOOD's own ``main.py`` with our postprocessors, the CLIP
network and CLIP's preprocessing registered (:mod:`openood_immuno.openood.main`)."""
from __future__ import annotations

from .args import HelpFormatter

DESCRIPTION = """\
Run OpenOOD v1.5's main.py pipeline unchanged on OpenOOD config files, after registering
openood-immuno's postprocessors, 'network.name: clip' and 'preprocessor.name: clip'. Arguments
are main.py's: --config files merged in order (a name <id>_clip_<postprocessor>.yml that is
not a file is built at run time from the defaults; 'openood-immuno openood-config' writes it),
then --KEY VALUE (or --opts KEY VALUE ...) overrides. Needs OpenOOD
(scripts/install-openood.sh); runs on CPU too. See docs/openood.md.

example:
  openood-immuno openood-main --config imagenet_clip_mcm.yml --opts data_root ./data"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("openood-main", help="run OpenOOD's main.py pipeline with our configs",
                              description=DESCRIPTION, formatter_class=HelpFormatter,
                              usage="openood-immuno openood-main --config A.yml [B.yml ...] "
                                    "[--KEY VALUE ...] [--opts KEY VALUE ...]")
    p.set_defaults(func=run, passthrough=True)  # main.py's arguments go to OpenOOD's parser


def run(args) -> int:
    from openood_immuno.openood.main import main

    return main(args.passthrough_args)
