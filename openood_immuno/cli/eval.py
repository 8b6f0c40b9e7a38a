"""``openood-immuno eval``: score postprocessors on an OpenOOD data_root and write their tables."""
from __future__ import annotations

import sys
import time

from .args import (HelpFormatter, UsageError, add_data_root_arg, add_id_arg, add_loader_args, add_model_args, add_pp_arg,
                   add_progress_arg, check_data_root, check_lists, net_from_args, parse_postprocessors,
                   parse_pp_args, parse_seeds, postprocessor_names)
from openood_immuno.data.benchmarks import OOD_PRESETS
from openood_immuno.experiments.protocols import PROTOCOLS

DESCRIPTION = """\
Score one or more postprocessors on an OpenOOD v1.5 data_root and print and write, per
postprocessor, the table of Evaluator.eval_ood() (FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC per
OOD set, near and far means; ACC = the postprocessor's own predictions) plus ACC_zeroshot
(frozen CLIP), for postprocessors that decide (immuno) F1@tau, and a status column.

Each run is one folder, written whole at the end (complete or absent):
  OUTPUT_DIR/<id>_<model>_<weights>/<postprocessor>-<key>/         (--protocol openood)
  OUTPUT_DIR/<id>_<model>_<weights>/<postprocessor>_stream-<key>/  (--protocol stream)
holding ood.csv, scores_<set>.npz, artifacts.npz (immuno's EVT thresholds) and run.json
(what defines the run, its status and timings); <key> is the content key of what defines
the run, so the same run again replaces its folder. `openood-immuno report OUTPUT_DIR`
collects every run folder.

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
    add_data_root_arg(p)
    p.add_argument("--postprocessors", default="mcm",
                   help=f"comma-separated, from: {', '.join(postprocessor_names())}")
    p.add_argument("--benchmark", default="openood", choices=OOD_PRESETS,
                   help="OOD sets: openood (OpenOOD v1.5's near/far sets of --id), mos (iNaturalist, "
                        "SUN, Places, Textures under benchmark_imglist/mos/, ImageNet-1K only) or "
                        "immuno_vlm (Immuno-VLM's Table 1: ImageNet-O near, OpenOOD's iNaturalist and "
                        "Textures far; ImageNet-1K only; `openood-immuno imagenet-o-list` writes the "
                        "ImageNet-O list; docs/openood.md)")
    p.add_argument("--protocol", default="openood", choices=PROTOCOLS,
                   help="openood: ID test then each OOD set; stream: shuffled ID+OOD stream per OOD set")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds (mean and std reported): stream shuffles and, for "
                        "postprocessors that train (immuno), the training seed, one fit per seed "
                        "(default: stream seed 0, each postprocessor's own seed; implies --engine "
                        "builtin under auto)")
    p.add_argument("--engine", default="auto", choices=["auto", "openood", "builtin"],
                   help="auto: OpenOOD's Evaluator when installed (openood protocol and benchmark), "
                        "else builtin; --benchmark mos is always scored by builtin")
    p.add_argument("--aps", action="store_true", help="force OpenOOD's automatic parameter search")
    add_pp_arg(p, "ants.mllm=none or immuno.epochs=5", "one of --postprocessors")
    p.add_argument("--extra-ood", action="append", default=[], metavar="NAME=LIST",
                   help="extra OOD list relative to data_root (e.g. imagenet_o=benchmark_imglist/...); "
                        "repeatable")
    add_loader_args(p)
    p.add_argument("--score-batch-size", type=int, default=256, help="scoring batch size (stream batch)")
    p.add_argument("--output-dir", default="results", help="folder of the result tables")
    p.add_argument("--allow-degraded", action="store_true",
                   help="exit 0 even when a run is degraded or partial (e.g. ANTS whose MLLM failed): "
                        "such runs are written and marked so either way (runs marked NO MLLM or "
                        "RANDOM WEIGHTS, asked for by the command line, exit 0 without it)")
    add_progress_arg(p)
    p.set_defaults(func=run)


def choose_engine(engine: str, protocol: str, benchmark: str, extra_ood, seeds,
                  openood_installed: bool) -> str:
    """The engine that scores exactly what was asked, or a one-line refusal.

    OpenOOD's Evaluator scores OpenOOD's own OOD sets of ``--id``, once, in its protocol: it
    is chosen (``auto``) or accepted (``openood``) only for ``--benchmark openood``, ``--protocol
    openood``, no ``--extra-ood`` and no ``--seeds``; every other run is the builtin runner's.
    """
    if engine == "openood":
        if benchmark != "openood":
            raise UsageError(f"--engine openood scores OpenOOD's own OOD sets, not --benchmark "
                             f"{benchmark}: use --engine builtin (or auto)")
        if protocol != "openood" or extra_ood or seeds:
            raise UsageError("--engine openood supports only --protocol openood without --extra-ood and "
                             "--seeds (OpenOOD's Evaluator fits once): use --engine builtin")
    if engine != "auto":
        return engine
    return "openood" if (openood_installed and benchmark == "openood" and protocol == "openood"
                         and not extra_ood and not seeds) else "builtin"


def _engine(args) -> str:
    installed = False
    if args.engine == "auto" and args.benchmark == "openood":
        from openood_immuno.openood.registry import openood_available

        installed = openood_available()
    return choose_engine(args.engine, args.protocol, args.benchmark, args.extra_ood, args.seeds, installed)


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
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    pp_args = parse_pp_args(args.pp_arg, names)
    check_data_root(args.data_root)
    engine = _engine(args)

    from openood_immuno.core.cache import cache_root
    from openood_immuno.data.benchmarks import NUM_CLASSES, get_benchmark
    from openood_immuno.postprocessors.registry import build_postprocessor
    from openood_immuno.experiments.results import RunSpec, check_writable, resolved_args, write_run
    from openood_immuno.data.benchmarks import BenchmarkLists, parse_extra_ood
    from openood_immuno.experiments.runner import FeatureStore, evaluate, validate_benchmark

    lists = BenchmarkLists.of(get_benchmark(args.id_name, args.benchmark), parse_extra_ood(args.extra_ood))
    pps = {name: build_postprocessor(name, args.id_name, APS_mode=True if args.aps else None,
                                     **pp_args.get(name, {})) for name in names}
    for pp in pps.values():  # the WordNet corpus, ...: before the model is built
        pp.check_resources()
    check_lists(args.data_root, _needed_lists(lists, pps, engine, args.aps), args.id_name)
    list_keys = validate_benchmark(args.data_root, lists, NUM_CLASSES.get(args.id_name))
    check_writable(args.output_dir, "--output-dir")
    check_writable(str(cache_root()), "feature cache folder ($OPENOOD_IMMUNO_CACHE)")

    net = net_from_args(args)
    store = FeatureStore(net, args.data_root, lists, args.id_name, args.batch_size, args.num_workers,
                         progress=not args.no_progress,
                         local=any(pp.needs_local_features for pp in pps.values()))
    if store.local:   # per-patch features (glmcm): a ResNet CLIP has none; say so before any image is read
        from openood_immuno.models.local_tokens import check_patch_tokens

        check_patch_tokens(net.clip.visual, args.model)
    not_ok = []
    for name, pp in pps.items():
        spec = RunSpec(id_name=args.id_name, model=args.model, pretrained=args.pretrained,
                       net_identity=net.identity, data_root=args.data_root, lists=list_keys,
                       postprocessor=name, pp_args=resolved_args(pp), protocol=args.protocol,
                       seeds=tuple(seeds or ()), engine=engine, aps=bool(pp.APS_mode),
                       score_batch_size=args.score_batch_size, pp_overrides=pp_args.get(name, {}),
                       trains=pp.trains)
        started = time.time()
        print(f"\n== {name} ({engine} engine, {args.protocol} protocol"
              f"{', seeds ' + args.seeds if args.seeds and (args.protocol == 'stream' or pp.trains) else ''})",
              flush=True)
        if engine == "openood":
            from openood_immuno.experiments.openood_engine import evaluate_with_openood

            result = evaluate_with_openood(net, pp, args.data_root, args.id_name, args.batch_size,
                                           args.num_workers)
        else:
            result = evaluate(pp, store, args.protocol, seeds, args.score_batch_size)
        if result.hyperparams:
            print(f"APS chose {result.hyperparams}")
        if result.status:
            print(f"status: {result.status}")
        print(result.format(), flush=True)
        folder = write_run(args.output_dir, spec, result, {"started": started,
                                                           "seconds": time.time() - started},
                           {"benchmark": args.benchmark})
        print(f"results: {folder}")
        if result.run_status.fails:   # partial / degraded; stand-in and random weights exit 0
            not_ok.append(result.run_status.tag(name))
    if not_ok and not args.allow_degraded:
        print(f"openood-immuno: error: {'; '.join(not_ok)}: results are written and marked so; pass "
              "--allow-degraded to accept such runs (exit 0)", file=sys.stderr)
        return 3
    return 0
