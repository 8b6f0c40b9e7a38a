"""``openood-immuno`` command line: ``eval`` (and the method commands ``antibodies``, ``vaccinate``...)."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import torch

from .cache import atomic_write_json
from .clip_net import build_clip_net
from .ymlconfig import available_postprocessors
from .registry import build_postprocessor, openood_available
from .runner import PROTOCOLS, BenchmarkLists, FeatureStore, evaluate, parse_extra_ood

log = logging.getLogger("openood_immuno")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="ViT-B-16", help="open_clip model name or JSON config path")
    parser.add_argument("--pretrained", default="openai",
                        help="open_clip tag, local checkpoint path, or 'none' (random init: smoke tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--id", dest="id_name", default="imagenet", choices=["imagenet"])


def net_from_args(args):
    return build_clip_net(args.model, args.pretrained, args.id_name, device=args.device)


def _weights_tag(pretrained: str) -> str:
    return os.path.splitext(os.path.basename(pretrained.rstrip("/")))[0] or "none"


def cmd_eval(args) -> int:
    names = [n.strip() for n in args.postprocessors.split(",") if n.strip()]
    unknown = [n for n in names if n not in available_postprocessors()]
    if unknown:
        raise SystemExit(f"unknown postprocessor(s) {unknown}: available {available_postprocessors()}")
    engine = args.engine
    if engine == "auto":
        engine = "openood" if openood_available() and args.protocol == "openood" and not args.extra_ood \
            else "builtin"
    if engine == "openood" and (args.protocol != "openood" or args.extra_ood):
        raise SystemExit("--engine openood supports only --protocol openood without --extra-ood")
    net = net_from_args(args)
    lists = BenchmarkLists(extra=parse_extra_ood(args.extra_ood))
    store = FeatureStore(net, args.data_root, lists, args.id_name, args.batch_size, args.num_workers)
    seeds = [int(s) for s in args.seeds.split(",")]
    pp_args = parse_pp_args(args.pp_arg)
    stray = sorted(set(pp_args) - set(names))
    if stray:
        raise SystemExit(f"--pp-arg names {stray}, which are not among --postprocessors {names}")
    model_tag = os.path.splitext(os.path.basename(args.model))[0] if args.model.endswith(".json") \
        else args.model
    run_dir = os.path.join(args.output_dir, f"{args.id_name}_{model_tag}_{_weights_tag(args.pretrained)}")
    atomic_write_json({"id": args.id_name, "model": model_tag, "pretrained": args.pretrained,
                       "protocol_seeds": seeds}, os.path.join(run_dir, "run.json"))
    for name in names:
        pp = build_postprocessor(name, args.id_name, APS_mode=True if args.aps else None,
                                 **pp_args.get(name, {}))
        print(f"\n== {name} ({engine} engine, {args.protocol} protocol"
              f"{', seeds ' + args.seeds if args.protocol == 'stream' else ''})", flush=True)
        if engine == "openood":
            from .openood_bridge import evaluate_with_openood

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


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.results_dir, args.out)
    print(path.read_text(encoding="utf-8"))
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openood-immuno", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate postprocessors on an OpenOOD data_root")
    add_model_args(ev)
    ev.add_argument("--data-root", required=True, help="OpenOOD data_root (holds benchmark_imglist/)")
    ev.add_argument("--postprocessors", default="mcm", help=f"comma-separated, from {available_postprocessors()}")
    ev.add_argument("--protocol", default="openood", choices=PROTOCOLS,
                    help="openood: ID test then each OOD set; stream: shuffled ID+OOD stream per OOD set")
    ev.add_argument("--seeds", default="0", help="stream seeds, comma-separated (mean and std reported)")
    ev.add_argument("--engine", default="auto", choices=["auto", "openood", "builtin"],
                    help="auto: OpenOOD's Evaluator when installed (openood protocol), else builtin")
    ev.add_argument("--aps", action="store_true", help="force OpenOOD's automatic parameter search")
    ev.add_argument("--pp-arg", action="append", default=[], metavar="NAME.KEY=VALUE",
                    help="override a yml argument, e.g. ants.mllm=none or immuno.epochs=5 (repeatable)")
    ev.add_argument("--extra-ood", action="append", default=[], metavar="NAME=LIST",
                    help="extra OOD list relative to data_root (e.g. imagenet_o=benchmark_imglist/...)")
    ev.add_argument("--batch-size", type=int, default=128, help="backbone batch size")
    ev.add_argument("--score-batch-size", type=int, default=256, help="scoring batch size (stream batch)")
    ev.add_argument("--num-workers", type=int, default=2)
    ev.add_argument("--output-dir", default="results")
    ev.set_defaults(func=cmd_eval)
    rep = sub.add_parser("report", help="markdown + leaderboard CSV + plots of eval results")
    rep.add_argument("results_dir", help="the --output-dir of `openood-immuno eval`")
    rep.add_argument("--out", default=None, help="output folder (default RESULTS_DIR/report)")
    rep.set_defaults(func=cmd_report)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


_COMMAND_MODULES = ("openood_immuno.immuno.commands", "openood_immuno.immuno.falsify_command",
                    "openood_immuno.neglabel_commands")


def parse_pp_args(items) -> dict[str, dict]:
    """``NAME.KEY=VALUE`` (VALUE read as YAML) -> ``{NAME: {KEY: VALUE}}``."""
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not name or not key:
            raise SystemExit(f"--pp-arg expects NAME.KEY=VALUE (e.g. ants.mllm=none), got {item!r}")
        out.setdefault(name, {})[key] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    """Parse ``argv`` and run the command; errors propagate (for programmatic use and tests)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return args.func(args)


# Errors whose message already names the fix: the console command prints them without a traceback.
USER_ERRORS = (ValueError, KeyError, LookupError, FileNotFoundError, ImportError, RuntimeError)


def run(argv=None) -> int:
    """The ``openood-immuno`` console command: :func:`main`, bad input reported in one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return main(argv)
    except USER_ERRORS as exc:
        if "-v" in argv or "--verbose" in argv:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"openood-immuno: error: {message} (--verbose shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
