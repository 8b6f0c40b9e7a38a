"""``openood-immuno neglabels``: export NegLabel's mined negative label list, or check a list file.

    openood-immuno neglabels --model ViT-B-16 --pretrained openai --out neglabels.txt
    openood-immuno neglabels --check neglabels.txt

A file is used by setting ``neg_labels_file: FILE`` on ``neglabel`` / ``ants*`` (no mining).
"""
from __future__ import annotations

import argparse
import time

from .neglabel import (ADJ_TEMPLATE, ID_TEMPLATE, NEGLABEL_EXCLUDED_LEXNAMES, NOUN_TEMPLATE,
                       export_labels, import_labels, negative_labels)


def cmd_neglabels(args) -> int:
    if args.check:
        labels = import_labels(args.check)
        print(f"{args.check}: {len(labels.nouns)} nouns + {len(labels.adjectives)} adjectives")
        for key, value in labels.meta.items():
            print(f"  {key}: {value}")
        return 0
    if not args.out:
        raise SystemExit("neglabels: pass --out FILE (export) or --check FILE (validate a list)")
    from .cli import net_from_args

    net = net_from_args(args)
    start = time.perf_counter()
    labels = negative_labels(net, args.n_neg_labels, args.quantile, args.id_template,
                             args.noun_template, args.adj_template, tuple(args.exclude_lexnames),
                             args.corpus_limit)
    path = export_labels(labels, args.out)
    print(f"{len(labels.nouns)} nouns + {len(labels.adjectives)} adjectives "
          f"({time.perf_counter() - start:.1f} s): {path}")
    return 0


def add_commands(subparsers) -> None:
    """Add the ``neglabels`` sub-command to the ``openood-immuno`` parser."""
    from .cli import add_model_args

    p = subparsers.add_parser("neglabels", help="export NegLabel's mined negative labels to a text "
                                                "file, or check such a file",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    p.add_argument("--out", help="write the mined list here")
    p.add_argument("--check", metavar="FILE", help="read FILE and print what it holds")
    p.add_argument("--n-neg-labels", type=int, default=10_000)
    p.add_argument("--quantile", type=float, default=0.95)
    p.add_argument("--id-template", default=ID_TEMPLATE)
    p.add_argument("--noun-template", default=NOUN_TEMPLATE)
    p.add_argument("--adj-template", default=ADJ_TEMPLATE)
    p.add_argument("--exclude-lexnames", nargs="*", default=list(NEGLABEL_EXCLUDED_LEXNAMES))
    p.add_argument("--corpus-limit", type=int, default=0, help="> 0: mine on that many candidates")
    p.set_defaults(func=cmd_neglabels)
