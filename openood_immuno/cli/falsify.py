"""``openood-immuno falsify``: the falsification test of Immuno-VLM's antibodies
(:mod:`openood_immuno.experiments.falsification`) on an OpenOOD data_root."""
from __future__ import annotations

from .args import (HelpFormatter, UsageError, add_data_root_arg, add_id_arg, add_loader_args, add_model_args,
                   add_pp_arg, add_progress_arg, check_data_root, check_lists, did_you_mean, net_from_args,
                   parse_pp_args, parse_seeds, set_as_pp_args)
from openood_immuno.experiments.variants import DEFAULT_VARIANTS, EVERY, VARIANTS

#: --regime: training overrides for every variant that trains (the paper's: Sec. 4.3)
REGIMES = {"default": {}, "paper": {"shots": "all", "epochs": 10}}
DESCRIPTION = """\
The falsification test of Immuno-VLM's antibodies (docs/immuno_vlm.md, "Falsification"): for
each training seed, the full method (immuno), the same without antibodies (beta = 0, lambda = 0),
the adapter off (immuno_zeroshot) and plain MCM, fitted on the same cached features (one backbone
pass for all seeds); reports ID accuracy, OOD confidence, AUROC/FPR@95 near and far and
nearest-antibody cosines, with deltas vs the full method as mean +- std over seeds. Writes
falsification.md, falsification.csv and falsification.png to OUTPUT_DIR.

--pp-arg NAME.KEY=VALUE sets a parameter of one variant (NAME = its label) or, with NAME *, of
every variant that has it (a key no variant has is refused); the training seed is --seeds.
A verdict needs at least 5 seeds (fewer: the report measures but says "no verdict").

examples:
  openood-immuno falsify --data-root ./data --seeds 0,1,2,3,4 --output-dir results/falsify \
      --pp-arg '*.epochs=10' --pp-arg immuno_zeroshot.antibody_bank=banks/imagenet.json
  openood-immuno falsify --data-root ./data --bank banks/imagenet_qwen.json --regime paper \
      --extra-ood imagenet_o=benchmark_imglist/imagenet/test_imagenet_o.txt --near-ood imagenet_o \
      --output-dir results/falsify_qwen"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("falsify", help="antibodies on vs off over training seeds (the review's test)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_model_args(p)
    add_id_arg(p)
    add_data_root_arg(p)
    p.add_argument("--seeds", default="0,1,2,3,4", help="training seeds, comma-separated")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset, immuno first (the reference of the deltas)")
    add_pp_arg(p, "'*.epochs=10' or immuno.antibody_bank=banks/imagenet_qwen.json",
               "a variant of --variants, or * for every variant that has KEY")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="deprecated (removed in the next release): the same as --pp-arg '*.KEY=VALUE'")
    p.add_argument("--bank", default=None, metavar="FILE",
                   help="antibody bank JSON for every variant (e.g. an LLM bank from `openood-immuno "
                        "antibodies --generator hf:...`); default: the on-the-fly WordNet bank")
    p.add_argument("--regime", choices=sorted(REGIMES), default="default",
                   help="training regime: default (the yml's: 16 shots x 20 epochs) or paper (all "
                        "training images, 10 epochs: Sec. 4.3)")
    p.add_argument("--extra-ood", action="append", default=[], metavar="NAME=LIST",
                   help="an extra OOD list (LIST relative to data_root), e.g. "
                        "imagenet_o=benchmark_imglist/imagenet/test_imagenet_o.txt; repeatable")
    p.add_argument("--near-ood", default=None, metavar="NAMES",
                   help="comma-separated OOD sets that form the near-OOD group (default: OpenOOD's "
                        "ssb_hard,ninco); e.g. imagenet_o, the paper's near set, given by --extra-ood")
    p.add_argument("--msp-temperature", type=float, default=None,
                   help="T of the classifiers' max-softmax (default: MCM's T)")
    add_loader_args(p)
    p.add_argument("--score-batch-size", type=int, default=1024, help="scoring batch size")
    p.add_argument("--output-dir", required=True, help="folder of the three output files")
    add_progress_arg(p)
    p.set_defaults(func=run)


def _variants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in VARIANTS:
            raise UsageError(f"--variants: unknown variant {name!r}{did_you_mean(name, VARIANTS)}; "
                             f"choose from {', '.join(VARIANTS)}")
    if not names or names[0] != "immuno" or len(set(names)) != len(names):
        raise UsageError(f"--variants {text!r}: name each variant once, immuno first (the reference)")
    return names


def _regime_and_bank(args, pp_args: dict) -> dict:
    """``--regime`` and ``--bank`` as ``*`` overrides of ``pp_args`` (every variant that has the
    key); a ``--pp-arg`` that contradicts them is refused."""
    import os

    forced = dict(REGIMES[args.regime])
    if args.bank is not None:
        if not os.path.isfile(args.bank):
            raise UsageError(f"--bank {args.bank!r}: no such file; build one with `openood-immuno "
                             "antibodies --out FILE`")
        forced["antibody_bank"] = os.path.abspath(args.bank)
    clash = sorted(f"{name}.{key}" for name, values in pp_args.items() for key in values
                   if key in forced and values[key] != forced[key])
    if clash:
        raise UsageError(f"--pp-arg {', '.join(clash)} contradicts --regime/--bank: give it once")
    out = {name: dict(values) for name, values in pp_args.items()}
    out.setdefault(EVERY, {}).update(forced)
    if not out[EVERY]:
        del out[EVERY]
    return out


def _groups(lists, near_arg):
    """(near, far) set names: OpenOOD's groups, or ``--near-ood`` (then far is OpenOOD's far)."""
    if near_arg is None:
        return list(lists.near), list(lists.far)
    near = [n.strip() for n in near_arg.split(",") if n.strip()]
    unknown = [n for n in near if n not in lists.ood]
    if not near or unknown:
        raise UsageError(f"--near-ood {near_arg!r}: name OOD sets of {', '.join(lists.ood)} (add a list "
                         "with --extra-ood NAME=LIST)")
    return near, [n for n in lists.far if n not in near]


def run(args) -> int:
    seeds = parse_seeds(args.seeds)
    names = _variants(args.variants)
    pp_args = _regime_and_bank(args, parse_pp_args(set_as_pp_args(args.overrides) + args.pp_arg, names,
                                                   every=True, what="variants"))
    if args.msp_temperature is not None and not args.msp_temperature > 0:
        raise UsageError(f"--msp-temperature must be > 0, got {args.msp_temperature}")
    check_data_root(args.data_root)

    from openood_immuno.data.benchmarks import NUM_CLASSES, get_benchmark
    from openood_immuno.core.cache import cache_root
    from openood_immuno.experiments.falsification import (FalsificationData, check_variants, data_from_store,
                                                          regime_line, run_falsification)
    from openood_immuno.experiments.falsification_verdict import overall_verdict
    from openood_immuno.experiments.falsification_report import write_falsification
    from openood_immuno.experiments.results import check_writable
    from openood_immuno.data.benchmarks import BenchmarkLists, parse_extra_ood
    from openood_immuno.experiments.runner import FeatureStore, validate_benchmark

    variants = [v for n in names for v in DEFAULT_VARIANTS if v.label == n]
    try:
        check_variants(variants, pp_args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    every_bank = pp_args.get(EVERY, {}).get("antibody_bank", "wordnet")
    if every_bank == "wordnet" or any(v.get("antibody_bank") == "wordnet" for v in pp_args.values()):
        from openood_immuno.data.wordnet import require_wordnet  # the variants' on-the-fly bank

        require_wordnet("falsify (the variants' antibody_bank: wordnet)")
    try:
        extra_ood = parse_extra_ood(args.extra_ood)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    lists = BenchmarkLists.of(get_benchmark(args.id_name), extra_ood)  # OpenOOD v1.5's sets + extra
    near, far = _groups(lists, args.near_ood)
    check_lists(args.data_root, [*lists.id.values(), *lists.ood.values()], args.id_name)
    validate_benchmark(args.data_root, lists, NUM_CLASSES.get(args.id_name))
    check_writable(args.output_dir, "--output-dir")
    check_writable(str(cache_root()), "feature cache folder ($OPENOOD_IMMUNO_CACHE)")

    net = net_from_args(args)
    store = FeatureStore(net, args.data_root, lists, args.id_name, args.batch_size, args.num_workers,
                         progress=not args.no_progress)
    command = (f"openood-immuno falsify --data-root {args.data_root} --model {args.model} --pretrained "
               f"{args.pretrained} --seeds {','.join(map(str, seeds))} --variants {','.join(names)}"
               + f" --regime {args.regime}" + (f" --bank {args.bank}" if args.bank else "")
               + "".join(f" --extra-ood {e}" for e in args.extra_ood)
               + (f" --near-ood {args.near_ood}" if args.near_ood else "")
               + "".join(f" --pp-arg '{n}.{k}={v}'" for n, kv in pp_args.items() for k, v in kv.items()))
    full = data_from_store(store)
    data = FalsificationData(full.net, full.id_features, full.id_test, full.ood, near, far)
    result = run_falsification(data, seeds, variants, pp_args, args.msp_temperature,
                               args.score_batch_size, {"command": command, "model": args.model,
                                                       "pretrained": args.pretrained,
                                                       "data_root": args.data_root,
                                                       "regime_name": args.regime})
    print(f"verdict: {overall_verdict(result)} ({regime_line(result.provenance)})")
    for path in write_falsification(result, args.output_dir):
        print(f"written: {path}")
    return 0
