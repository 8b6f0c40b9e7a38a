"""``openood-immuno openood-config``: the OpenOOD ``main.py`` run config of one benchmark and
postprocessor (:mod:`openood_immuno.openood.configs`), on stdout or written to a file."""
from __future__ import annotations

import os
import sys

from .args import HelpFormatter, UsageError, add_id_arg, did_you_mean, postprocessor_names

DESCRIPTION = """\
Print (or, with --out, write) the complete OpenOOD v1.5 main.py config of one postprocessor on
one ID benchmark: OpenOOD's dataset and ood_dataset lists of --id, 'network.name: clip' and
'preprocessor.name: clip', the test_ood pipeline, and the postprocessor with every argument and
sweep list written out from its defaults (so OpenOOD's --KEY VALUE overrides find them). Image
folders are '@{data_root}'/..., set with --data_root when running. The launcher
'openood-immuno openood-main --config <id>_clip_<postprocessor>.yml' builds the same config
itself; this command is for OpenOOD's own main.py or for editing. See docs/openood.md.

examples:
  openood-immuno openood-config mcm --id imagenet
  openood-immuno openood-config immuno --id cifar10 --out cifar10_clip_immuno.yml"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("openood-config", help="print or write the OpenOOD main.py config of a run",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("name", metavar="NAME", help=f"postprocessor, one of: {', '.join(postprocessor_names())}")
    add_id_arg(p)
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the config to FILE (.yml; replaced atomically) instead of stdout")
    p.set_defaults(func=run)


def check_out(out: str) -> None:
    """``--out`` names a .yml file that can be written (OpenOOD's Config reads only .yml)."""
    if os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a folder: give a file path, e.g. "
                         f"{os.path.join(out, 'imagenet_clip_mcm.yml')}")
    if not out.endswith(".yml"):
        raise UsageError(f"--out {out!r} must end in .yml: OpenOOD's Config reads only .yml files")


def run(args) -> int:
    known = postprocessor_names()
    if args.name not in known:
        raise UsageError(f"NAME {args.name!r} is not a postprocessor{did_you_mean(args.name, known)}: "
                         f"give one of {', '.join(known)}")
    if args.out is not None:
        check_out(args.out)
    from openood_immuno.core.cache import atomic_write_text
    from openood_immuno.openood.configs import render

    text = render(args.id_name, args.name)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    atomic_write_text(text, args.out)
    print(f"wrote {args.out}: run it with openood-immuno openood-main --config {args.out} "
          "--data_root /path/to/openood/data", file=sys.stderr)
    return 0
