"""``openood-immuno falsify``: the falsification test of :mod:`.falsification` on an OpenOOD
data_root.

:func:`add_arguments` adds the command's own flags (the caller adds ``--model``,
``--pretrained``, ``--device``, ``--id``, ``--batch-size``, ``--num-workers``); :func:`run`
checks every value, then extracts (or loads) the features of every list once and fits each
variant at each training seed on them.
"""
from __future__ import annotations

import argparse
import os

DESCRIPTION = """\
The falsification test of Immuno-VLM's antibodies (docs/immuno_vlm.md, "Falsification"): for
each training seed, the full method (immuno), the same without antibodies (beta = 0, lambda = 0),
the adapter off (immuno_zeroshot) and plain MCM, on the same cached features; reports ID accuracy,
OOD confidence, AUROC/FPR@95 near and far and nearest-antibody cosines, with deltas vs the full
method as mean +- std over seeds. Writes falsification.md, falsification.csv, falsification.png.

example:
  openood-immuno falsify --data-root ./data --seeds 0,1,2,3,4 --output-dir results/falsify"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's own flags."""
    from .falsification import DEFAULT_VARIANTS

    labels = ",".join(v.label for v in DEFAULT_VARIANTS)
    parser.add_argument("--data-root", required=True, help="OpenOOD data_root (holds benchmark_imglist/)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="training seeds, comma-separated")
    parser.add_argument("--variants", default=labels,
                        help=f"comma-separated subset of {labels} (immuno first: the reference)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="parameter for every variant that has it (VALUE read as YAML), e.g. "
                             "epochs=5 or antibody_bank=banks/imagenet_qwen.json (repeatable)")
    parser.add_argument("--msp-temperature", type=float, default=None,
                        help="T of the classifiers' max-softmax (default: MCM's T)")
    parser.add_argument("--score-batch-size", type=int, default=1024, help="scoring batch size")
    parser.add_argument("--output-dir", required=True, help="folder of the three output files")


def add_commands(subparsers) -> None:
    """Wire ``falsify`` into the ``openood-immuno`` sub-commands."""
    from ..cli import add_model_args

    p = subparsers.add_parser("falsify", help="antibodies on vs off over training seeds (the review's test)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=128, help="backbone batch size")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    add_arguments(p)
    p.set_defaults(func=run)


def _parse(args):
    import yaml

    from .falsification import DEFAULT_VARIANTS

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers such as 0,1,2, got {args.seeds!r}") from None
    known = {v.label: v for v in DEFAULT_VARIANTS}
    wanted = [s.strip() for s in args.variants.split(",") if s.strip()]
    bad = [w for w in wanted if w not in known]
    if bad:
        raise ValueError(f"--variants: unknown {bad}; choose from {list(known)}")
    extra = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (e.g. epochs=5), got {item!r}")
        extra[key.strip()] = yaml.safe_load(value)
    if args.msp_temperature is not None and not args.msp_temperature > 0:
        raise ValueError(f"--msp-temperature must be > 0, got {args.msp_temperature}")
    return seeds, [known[w] for w in wanted], extra


def _check_lists(data_root: str, lists) -> None:
    specs = [*lists.id.values(), *lists.ood.values()]
    missing = [s.imglist for s in specs if not os.path.isfile(os.path.join(data_root, s.imglist))]
    if missing:
        raise FileNotFoundError(f"--data-root {data_root}: missing image list(s) {missing} (an OpenOOD "
                                "ImageNet data_root has benchmark_imglist/imagenet/...)")


def run(args) -> int:
    """Check the flags, then run the test and write its three files; returns 0."""
    import torch

    from ..clip_net import build_clip_net
    from ..runner import BenchmarkLists, FeatureStore
    from .falsification import (check_seeds, check_variants, data_from_store, run_falsification,
                                write_falsification)

    seeds, variants, extra = _parse(args)
    check_seeds(seeds)
    check_variants(variants, extra)
    lists = BenchmarkLists()
    _check_lists(args.data_root, lists)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    net = build_clip_net(args.model, args.pretrained, args.id_name, device=device)
    store = FeatureStore(net, args.data_root, lists, args.id_name, args.batch_size, args.num_workers)
    command = (f"openood-immuno falsify --data-root {args.data_root} --model {args.model} --pretrained "
               f"{args.pretrained} --seeds {','.join(map(str, seeds))} --variants "
               f"{','.join(v.label for v in variants)}"
               + "".join(f" --set {k}={v}" for k, v in extra.items()))
    result = run_falsification(data_from_store(store), seeds, variants, extra, args.msp_temperature,
                               args.score_batch_size,
                               {"command": command, "model": args.model, "pretrained": args.pretrained,
                                "data_root": args.data_root})
    for path in write_falsification(result, args.output_dir):
        print(f"written: {path}")
    return 0
