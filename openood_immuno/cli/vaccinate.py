"""``openood-immuno vaccinate``: train (or load from cache) an Immuno-VLM rejection adapter."""
from __future__ import annotations

import json
import os

from .args import (HelpFormatter, UsageError, add_data_root_arg, add_id_arg, add_loader_args, add_model_args, add_pp_arg,
                   add_progress_arg, check_data_root, check_lists, did_you_mean, net_from_args,
                   parse_pp_args, postprocessor_names)

DESCRIPTION = """\
Train the rejection adapter of an Immuno-VLM config (vaccination, Phase 3) on the ID training
list of an OpenOOD data_root, fit its EVT calibration (on held-out training images or the
validation list: evt_fit), and cache the adapter, so the postprocessor's setup() (and
`openood-immuno eval`) later loads it.

example:
  openood-immuno vaccinate --data-root ./data --pp-arg immuno.epochs=5"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("vaccinate", help="train and cache an Immuno-VLM rejection adapter",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_model_args(p)
    add_id_arg(p)
    add_data_root_arg(p)
    p.add_argument("--config", default="immuno",
                   help="immuno | immuno_dis | an immuno ablation (a shipped postprocessor name)")
    p.add_argument("--bank", default=None,
                   help="antibody bank JSON (default: the config's antibody_bank)")
    p.add_argument("--shots", type=lambda v: v if v == "all" else int(v), default=None,
                   help="training images per class, all or 0 = the whole training list (default: "
                        "the config's shots)")
    add_pp_arg(p, "immuno.margin=0.3", "the --config")
    add_loader_args(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    known = postprocessor_names()
    if args.config not in known:
        raise UsageError(f"--config: unknown postprocessor {args.config!r}{did_you_mean(args.config, known)}; "
                         f"use immuno, immuno_dis or an immuno ablation")
    overrides = parse_pp_args(args.pp_arg, [args.config]).get(args.config, {})
    if args.bank is not None:
        overrides["antibody_bank"] = args.bank
    if args.shots is not None:
        overrides["shots"] = args.shots
    check_data_root(args.data_root)

    from openood_immuno.data.benchmarks import BENCHMARKS
    from openood_immuno.data.lists import ImglistDataset, make_loader, read_imglist
    from openood_immuno.data.features import LazyFeatures
    from openood_immuno.postprocessors.registry import build_postprocessor

    pp = build_postprocessor(args.config, args.id_name, **overrides)
    if not getattr(pp, "vaccinate", False):
        raise UsageError(f"--config {args.config} has no rejection adapter to train: use immuno, "
                         "immuno_dis or an immuno ablation")
    pp.check_resources()
    bench = BENCHMARKS[args.id_name]
    splits = [bench.id["train"], bench.id["val"]]
    check_lists(args.data_root, splits, args.id_name)
    for spec in splits:  # encoding, labels, duplicates: before the model is built
        read_imglist(os.path.join(args.data_root, spec.imglist), bench.num_classes, id_list=True)
    net = net_from_args(args)
    loaders = {split: make_loader(ImglistDataset(args.data_root, bench.id[split], net.preprocess,
                                                 bench.num_classes),
                                  args.batch_size, args.num_workers) for split in ("train", "val")}
    pp.fit(net.eval(), LazyFeatures(net, loaders, not args.no_progress))
    info = pp.scorer.vaccination
    print(pp.scorer.report.summary())
    print(f"adapter: {info['path']} ({'loaded from cache' if info['cached'] else 'trained'}, "
          f"{info['train_size']} ID features)")
    print(f"push {info['before']['push']:.4f} -> {info['after']['push']:.4f}; "
          f"pull {info['before']['pull']:.4f} -> {info['after']['pull']:.4f}")
    if getattr(pp.scorer, "evt", None) is not None:
        status = pp.status()
        print(f"EVT fit: {status['evt_fit']}" + (f"; note: {status['note']}" if status.get("note") else ""))
    print(json.dumps({"config": args.config, **{k: info[k] for k in ("key", "path", "cached")}}))
    return 0
