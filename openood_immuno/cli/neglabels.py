"""``openood-immuno neglabels``: export NegLabel's mined negative label list, or check a list file."""
from __future__ import annotations

import time

from .args import (HelpFormatter, UsageError, add_id_arg, add_model_args, add_progress_arg, check_out_file,
                   net_from_args)

DESCRIPTION = """\
Mine NegLabel's negative labels (Jiang et al., ICLR 2024) for the ID classes under a CLIP net
and write them to a text file, or read such a file and print what it holds. A file is used by
setting neg_labels_file: FILE on neglabel / ants* (no mining then). Unset mining flags take the
neglabel postprocessor's values (configs/postprocessors/neglabel.yml).

examples:
  openood-immuno neglabels --model ViT-B-16 --pretrained openai --out neglabels.txt
  openood-immuno neglabels --check neglabels.txt"""

# the mining flags: each sets the neglabel postprocessor argument of its name
MINING_PARAMS = ("n_neg_labels", "neg_fraction", "quantile", "id_template", "noun_template",
                 "adj_template", "exclude_lexnames", "corpus_limit")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("neglabels", help="export NegLabel's mined negative labels to a text "
                                                "file, or check such a file",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_model_args(p)
    add_id_arg(p)
    p.add_argument("--out", help="write the mined list here")
    p.add_argument("--check", metavar="FILE", help="read FILE and print what it holds")
    mining = p.add_argument_group("mining (default: the neglabel postprocessor's values)")
    mining.add_argument("--n-neg-labels", type=int, help="negative labels to keep (M)")
    mining.add_argument("--neg-fraction", type=float,
                        help="> 0: keep this fraction of each pool (the NegLabel code: 0.15) "
                             "instead of --n-neg-labels in all")
    mining.add_argument("--quantile", type=float, help="eta: quantile over ID classes of the similarity")
    mining.add_argument("--id-template", help="prompt of the ID class names")
    mining.add_argument("--noun-template", help="prompt of candidate nouns")
    mining.add_argument("--adj-template", help="prompt of candidate adjectives")
    mining.add_argument("--exclude-lexnames", nargs="*", metavar="LEXNAME",
                        help="WordNet lexicographer files left out of the corpus")
    mining.add_argument("--corpus-limit", type=int, help="> 0: mine on that many candidates only")
    add_progress_arg(p)
    p.set_defaults(func=run)


def mining_params(args) -> dict:
    """The mining parameters: the neglabel postprocessor's values, with the flags that were set."""
    from openood_immuno.postprocessors.registry import build_postprocessor

    defaults = build_postprocessor("neglabel", args.id_name).args
    return {key: defaults[key] if getattr(args, key) is None else getattr(args, key)
            for key in MINING_PARAMS}


def run(args) -> int:
    from openood_immuno.methods.neglabel import export_labels, import_labels, negative_labels

    if args.check:
        labels = import_labels(args.check)
        print(f"{args.check}: {len(labels.nouns)} nouns + {len(labels.adjectives)} adjectives")
        for key, value in labels.meta.items():
            print(f"  {key}: {value}")
        return 0
    if not args.out:
        raise UsageError("neglabels: pass --out FILE (export) or --check FILE (validate a list)")
    check_out_file(args.out, "--out")
    params = mining_params(args)
    from openood_immuno.data.wordnet import require_wordnet

    require_wordnet("neglabels (the mining corpus)")
    net = net_from_args(args)
    start = time.perf_counter()
    labels = negative_labels(net, params["n_neg_labels"], params["quantile"], params["id_template"],
                             params["noun_template"], params["adj_template"],
                             tuple(params["exclude_lexnames"]), params["corpus_limit"],
                             fraction=params["neg_fraction"])
    path = export_labels(labels, args.out)
    print(f"{len(labels.nouns)} nouns + {len(labels.adjectives)} adjectives "
          f"({time.perf_counter() - start:.1f} s): {path}")
    return 0
