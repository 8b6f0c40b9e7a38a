"""``openood-immuno eval``: score postprocessors on an OpenOOD data_root and write their tables."""
from __future__ import annotations

import os

from .args import (HelpFormatter, UsageError, add_id_arg, add_loader_args, add_model_args, add_pp_arg,
                   add_progress_arg, check_data_root, check_lists, net_from_args, parse_postprocessors,
                   parse_pp_args, parse_seeds, postprocessor_names)

PROTOCOLS = ("openood", "stream")
DESCRIPTION = """\
Score one or more postprocessors on an OpenOOD v1.5 data_root and print and write, per
postprocessor, the table of Evaluator.eval_ood() (FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC per
OOD set, near and far means) to OUTPUT_DIR/<run>/<postprocessor>/ood.csv.

Image features are computed once per model and list and cached, so several postprocessors
cost one backbone pass. Flags, postprocessor names, --pp-arg and the data_root's image lists
are checked before any model is built.

example:
  openood-immuno eval --data-root ./data --postprocessors mcm,neglabel,immuno"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score postprocessors on an OpenOOD data_root",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_model_args(p)
    add_id_arg(p)
    p.add_argument("--data-root", required=True, help="OpenOOD data_root (holds benchmark_imglist/)")
    p.add_argument("--postprocessors", default="mcm",
                   help=f"comma-separated, from: {', '.join(postprocessor_names())}")
    p.add_argument("--protocol", default="openood", choices=PROTOCOLS,
                   help="openood: ID test then each OOD set; stream: shuffled ID+OOD stream per OOD set")
    p.add_argument("--seeds", default="0", help="stream seeds, comma-separated (mean and std reported)")
    p.add_argument("--engine", default="auto", choices=["auto", "openood", "builtin"],
                   help="auto: OpenOOD's Evaluator when installed (openood protocol), else builtin")
    p.add_argument("--aps", action="store_true", help="force OpenOOD's automatic parameter search")
    add_pp_arg(p, "ants.mllm=none or immuno.epochs=5")
    p.add_argument("--extra-ood", action="append", default=[], metavar="NAME=LIST",
                   help="extra OOD list relative to data_root (e.g. imagenet_o=benchmark_imglist/...); "
                        "repeatable")
    add_loader_args(p)
    p.add_argument("--score-batch-size", type=int, default=256, help="scoring batch size (stream batch)")
    p.add_argument("--output-dir", default="results", help="folder of the result tables")
    add_progress_arg(p)
    p.set_defaults(func=run)


def _weights_tag(pretrained: str) -> str:
    return os.path.splitext(os.path.basename(pretrained.rstrip("/")))[0] or "none"


def _engine(args) -> str:
    if args.engine == "openood" and (args.protocol != "openood" or args.extra_ood):
        raise UsageError("--engine openood supports only --protocol openood without --extra-ood: "
                         "use --engine builtin")
    if args.engine != "auto":
        return args.engine
    from ..registry import openood_available

    return "openood" if openood_available() and args.protocol == "openood" and not args.extra_ood \
        else "builtin"


def _needed_lists(lists, pps: dict, engine: str, aps: bool) -> list:
    """The image lists this run reads: ID test and every OOD set, plus what training,
    calibration, the parameter search or OpenOOD's Evaluator (which loads them all) need."""
    if engine == "openood":
        return [*lists.id.values(), lists.ood_val, *lists.ood.values()]
    specs = [lists.id["test"], *lists.ood.values()]
    if any(getattr(pp, "vaccinate", False) for pp in pps.values()):
        specs.append(lists.id["train"])
    if aps or any(getattr(pp, "APS_mode", False) for pp in pps.values()):
        specs += [lists.id["val"], lists.ood_val]
    elif any(getattr(pp, "calibrate", False) for pp in pps.values()):
        specs.append(lists.id["val"])
    return specs


def run(args) -> int:
    names = parse_postprocessors(args.postprocessors)
    seeds = parse_seeds(args.seeds)
    pp_args = parse_pp_args(args.pp_arg, names)
    check_data_root(args.data_root)
    engine = _engine(args)

    from ..data import NUM_CLASSES
    from ..registry import build_postprocessor
    from ..runner import BenchmarkLists, FeatureStore, evaluate, parse_extra_ood

    lists = BenchmarkLists(extra=parse_extra_ood(args.extra_ood))
    pps = {name: build_postprocessor(name, args.id_name, APS_mode=True if args.aps else None,
                                     **pp_args.get(name, {})) for name in names}
    check_lists(args.data_root, _needed_lists(lists, pps, engine, args.aps), NUM_CLASSES.get(args.id_name))

    from ..cache import atomic_write_json

    net = net_from_args(args)
    store = FeatureStore(net, args.data_root, lists, args.id_name, args.batch_size, args.num_workers,
                         progress=not args.no_progress)
    model_tag = os.path.splitext(os.path.basename(args.model))[0] if args.model.endswith(".json") \
        else args.model
    run_dir = os.path.join(args.output_dir, f"{args.id_name}_{model_tag}_{_weights_tag(args.pretrained)}")
    atomic_write_json({"id": args.id_name, "model": model_tag, "pretrained": args.pretrained,
                       "protocol_seeds": seeds}, os.path.join(run_dir, "run.json"))
    for name, pp in pps.items():
        print(f"\n== {name} ({engine} engine, {args.protocol} protocol"
              f"{', seeds ' + args.seeds if args.protocol == 'stream' else ''})", flush=True)
        if engine == "openood":
            from ..openood_bridge import evaluate_with_openood

            result = evaluate_with_openood(net, pp, args.data_root, args.id_name, args.batch_size,
                                           args.num_workers)
        else:
            result = evaluate(pp, store, args.protocol, seeds, args.score_batch_size)
        if result.hyperparams:
            print(f"APS chose {result.hyperparams}")
        if result.status:
            print(f"status: {result.status}")
        print(result.format(), flush=True)
        suffix = "" if args.protocol == "openood" else "_stream"
        print(f"results: {result.write_csv(os.path.join(run_dir, name + suffix))}")
    return 0
