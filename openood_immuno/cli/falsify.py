"""``openood-immuno falsify``: the falsification test of Immuno-VLM's antibodies
(:mod:`openood_immuno.experiments.falsification`) on an OpenOOD data_root."""
from __future__ import annotations

from .args import (HelpFormatter, UsageError, add_data_root_arg, add_id_arg, add_loader_args, add_model_args,
                   add_progress_arg, check_data_root, check_lists, did_you_mean, net_from_args,
                   parse_seeds)

VARIANTS = ("immuno", "immuno_no_antibodies", "immuno_zeroshot", "mcm")  # falsification.DEFAULT_VARIANTS
DESCRIPTION = """\
The falsification test of Immuno-VLM's antibodies (docs/immuno_vlm.md, "Falsification"): for
each training seed, the full method (immuno), the same without antibodies (beta = 0, lambda = 0),
the adapter off (immuno_zeroshot) and plain MCM, fitted on the same cached features (one backbone
pass for all seeds); reports ID accuracy, OOD confidence, AUROC/FPR@95 near and far and
nearest-antibody cosines, with deltas vs the full method as mean +- std over seeds. Writes
falsification.md, falsification.csv and falsification.png to OUTPUT_DIR.

example:
  openood-immuno falsify --data-root ./data --seeds 0,1,2,3,4 --output-dir results/falsify"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("falsify", help="antibodies on vs off over training seeds (the review's test)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_model_args(p)
    add_id_arg(p)
    add_data_root_arg(p)
    p.add_argument("--seeds", default="0,1,2,3,4", help="training seeds, comma-separated")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset, immuno first (the reference of the deltas)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a parameter for every variant that has it (VALUE read as YAML), e.g. epochs=10 "
                        "or antibody_bank=banks/imagenet_qwen.json; repeatable")
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


def _overrides(items) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE (e.g. epochs=5), got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]})") from None
    return out


def run(args) -> int:
    seeds = parse_seeds(args.seeds)
    names = _variants(args.variants)
    extra = _overrides(args.overrides)
    if args.msp_temperature is not None and not args.msp_temperature > 0:
        raise UsageError(f"--msp-temperature must be > 0, got {args.msp_temperature}")
    check_data_root(args.data_root)

    from openood_immuno.data.benchmarks import NUM_CLASSES, get_benchmark
    from openood_immuno.core.cache import cache_root
    from openood_immuno.experiments.falsification import (DEFAULT_VARIANTS, check_variants, data_from_store,
                                        run_falsification, write_falsification)
    from openood_immuno.experiments.results import check_writable
    from openood_immuno.data.benchmarks import BenchmarkLists
    from openood_immuno.experiments.runner import FeatureStore, validate_benchmark

    variants = [v for n in names for v in DEFAULT_VARIANTS if v.label == n]
    try:
        check_variants(variants, extra)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if extra.get("antibody_bank", "wordnet") == "wordnet":  # the variants' on-the-fly bank
        from openood_immuno.data.wordnet import require_wordnet

        require_wordnet("falsify (the variants' antibody_bank: wordnet)")
    lists = BenchmarkLists.of(get_benchmark(args.id_name))  # OpenOOD v1.5's near and far sets
    check_lists(args.data_root, [*lists.id.values(), *lists.ood.values()], args.id_name)
    validate_benchmark(args.data_root, lists, NUM_CLASSES.get(args.id_name))
    check_writable(args.output_dir, "--output-dir")
    check_writable(str(cache_root()), "feature cache folder ($OPENOOD_IMMUNO_CACHE)")

    net = net_from_args(args)
    store = FeatureStore(net, args.data_root, lists, args.id_name, args.batch_size, args.num_workers,
                         progress=not args.no_progress)
    command = (f"openood-immuno falsify --data-root {args.data_root} --model {args.model} --pretrained "
               f"{args.pretrained} --seeds {','.join(map(str, seeds))} --variants {','.join(names)}"
               + "".join(f" --set {k}={v}" for k, v in extra.items()))
    result = run_falsification(data_from_store(store), seeds, variants, extra, args.msp_temperature,
                               args.score_batch_size, {"command": command, "model": args.model,
                                                       "pretrained": args.pretrained,
                                                       "data_root": args.data_root})
    for path in write_falsification(result, args.output_dir):
        print(f"written: {path}")
    return 0
