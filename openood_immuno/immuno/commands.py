"""``openood-immuno antibodies`` and ``openood-immuno vaccinate`` (wired in by :func:`add_commands`).

``antibodies`` builds (or resumes) a bank JSON and prints a summary with the per-class
counts before and after band-pass filtration under a CLIP net; the per-class table goes to
``<out>.summary.json``. ``vaccinate`` trains the rejection adapter of an Immuno-VLM config on
an OpenOOD data_root and caches it, so the postprocessor's ``setup()`` later loads it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
import yaml

from ..cache import atomic_write_json

log = logging.getLogger("openood_immuno")


def add_commands(subparsers) -> None:
    """Add the ``antibodies`` and ``vaccinate`` sub-commands to an argparse sub-parser set."""
    from ..cli import add_model_args

    ab = subparsers.add_parser("antibodies", help="generate an Immuno-VLM antibody bank (resumable)",
                               description=cmd_antibodies.__doc__,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ab.add_argument("--id", dest="id_spec", default="imagenet",
                    help="'imagenet' or a text file with one ID class name per line")
    ab.add_argument("--generator", default="wordnet",
                    help="wordnet | hf:MODEL_NAME_OR_PATH | openai:http://HOST:PORT/v1")
    ab.add_argument("--out", required=True, help="bank JSON; classes already in it are skipped")
    ab.add_argument("--n-near", type=int, default=10, help="near-OOD antibodies per class")
    ab.add_argument("--n-contextual", type=int, default=5, help="contextual antibodies per class")
    ab.add_argument("--seed", type=int, default=0)
    llm = ab.add_argument_group("LLM generators")
    llm.add_argument("--llm-model", default=None,
                     help="openai: model name (default: the first of GET /models)")
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable with the key")
    llm.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request")
    llm.add_argument("--retries", type=int, default=2, help="extra tries per prompt when short")
    llm.add_argument("--temperature", type=float, default=0.7)
    llm.add_argument("--max-new-tokens", type=int, default=256)
    llm.add_argument("--llm-device", default="cuda" if torch.cuda.is_available() else "cpu",
                     help="hf: device of the language model")
    flt = ab.add_argument_group("band-pass summary (needs a CLIP net)")
    flt.add_argument("--model", default="ViT-B-16", help="open_clip model name or JSON config path")
    flt.add_argument("--pretrained", default="openai", help="open_clip tag, checkpoint path or 'none'")
    flt.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    flt.add_argument("--delta-low", type=float, default=0.55)
    flt.add_argument("--delta-high", type=float, default=0.92)
    flt.add_argument("--no-filter-summary", action="store_true", help="skip the CLIP filtering summary")
    ab.add_argument("--no-progress", action="store_true")
    ab.set_defaults(func=cmd_antibodies)

    vac = subparsers.add_parser("vaccinate", help="train and cache an Immuno-VLM rejection adapter",
                                description=cmd_vaccinate.__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(vac)
    vac.add_argument("--data-root", required=True, help="OpenOOD data_root (holds benchmark_imglist/)")
    vac.add_argument("--config", default="immuno", help="immuno | immuno_dis | an immuno ablation")
    vac.add_argument("--bank", default=None, help="antibody bank JSON (default: the config's, 'wordnet')")
    vac.add_argument("--shots", type=lambda v: v if v == "all" else int(v), default=None,
                     help="training images per class (all or 0 = the whole training list)")
    vac.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a postprocessor argument (YAML value), e.g. --set margin=0.3")
    vac.add_argument("--batch-size", type=int, default=128, help="backbone batch size")
    vac.add_argument("--num-workers", type=int, default=2)
    vac.set_defaults(func=cmd_vaccinate)


def _summary_path(out: str) -> Path:
    p = Path(out)
    return p.with_name(p.stem + ".summary.json")


def cmd_antibodies(args) -> int:
    """Build an antibody bank for the ID classes, then summarise it under a CLIP net."""
    from .generators import build_bank, id_classes, make_generator

    classes = id_classes(args.id_spec)
    options = {}
    if args.generator.startswith(("hf:", "openai:")):
        options = {"retries": args.retries, "temperature": args.temperature,
                   "max_new_tokens": args.max_new_tokens}
        if args.generator.startswith("openai:"):
            options.update(model=args.llm_model, api_key=os.environ.get(args.api_key_env),
                           timeout=args.timeout)
        else:
            options.update(device=args.llm_device)
    generator = make_generator(args.generator, args.n_near, args.n_contextual, args.seed, **options)
    bank = build_bank(generator, classes, args.out, progress=not args.no_progress)
    counts = bank.counts()
    total = {k: sum(c[k] for c in counts.values()) for k in ("near_ood", "contextual")}
    print(f"bank: {args.out} ({bank.provenance['generator']}, {bank.provenance['model']})")
    print(f"classes: {len(bank.class_names)} ({len(counts)} distinct names); antibodies: {len(bank)} ({total['near_ood']} near-OOD, "
          f"{total['contextual']} contextual); {len(bank.short)} classes short of "
          f"{args.n_near} near-OOD / {args.n_contextual} contextual")
    rows = [{"class": n, **counts[n], "before": sum(counts[n].values())}
            for n in dict.fromkeys(bank.class_names) if n in counts]
    pending = bank.missing()
    summary = {"bank": str(args.out), "provenance": bank.provenance, "short": sorted(bank.short),
               "pending": pending}
    if not args.no_filter_summary and rows:
        summary["filter"] = _filter_summary(args, bank, rows)
    summary["per_class"] = rows
    print(f"per-class counts: {atomic_write_json(summary, _summary_path(args.out))}")
    if pending:
        print(f"{len(pending)} classes got no answer and are pending (e.g. {pending[:3]}): re-run the "
              "same command to retry them")
        return 1
    return 0


def _filter_summary(args, bank, rows: list[dict]) -> dict:
    """Band-pass counts per class under text prototypes of ``--model``; fills ``rows[*]['after']``."""
    from ..clip_net import build_clip_net
    from .encode import encode_antibodies
    from .filtration import FilterReport, band_pass_mask

    names = [r["class"] for r in rows]
    net = build_clip_net(args.model, args.pretrained, names, device=args.device)
    emb, owner = encode_antibodies(net, [bank.antibodies_for(n) for n in names],
                                   {"near_ood": "a photo of a {}.", "contextual": "a photo of {}."})
    keep, _ = band_pass_mask(emb, owner, net.class_text_features.float(), args.delta_low, args.delta_high)
    report = FilterReport.from_mask(owner, keep, len(names), args.delta_low, args.delta_high)
    for row, after in zip(rows, report.after.tolist()):
        row["after"] = int(after)
    print(f"{report.summary()} (text prototypes of {net.identity})")
    worst = sorted(rows, key=lambda r: (r["after"], r["class"]))[:5]
    print("fewest survivors: " + ", ".join(f"{r['class']} {r['before']}->{r['after']}" for r in worst))
    return {"model": net.identity, "delta_low": args.delta_low, "delta_high": args.delta_high,
            "kept": int(report.after.sum()), "total": int(report.before.sum())}


def _parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_vaccinate(args) -> int:
    """Train (or load from cache) the rejection adapter of an Immuno-VLM config on the ID
    training list of an OpenOOD data_root, fit its EVT on the ID validation list, and report."""
    from ..cli import net_from_args
    from ..data import IMAGENET_ID, NUM_CLASSES, ImglistDataset, make_loader
    from ..features import LazyFeatures
    from ..registry import build_postprocessor

    overrides = _parse_overrides(args.overrides)
    if args.bank is not None:
        overrides["antibody_bank"] = args.bank
    if args.shots is not None:
        overrides["shots"] = args.shots
    pp = build_postprocessor(args.config, args.id_name, **overrides)
    if not getattr(pp, "vaccinate", False):
        raise SystemExit(f"{args.config} has no rejection adapter to train: use immuno, immuno_dis "
                         "or an immuno ablation")
    net = net_from_args(args)
    loaders = {split: make_loader(ImglistDataset(args.data_root, IMAGENET_ID[split], net.preprocess,
                                                 NUM_CLASSES[args.id_name]),
                                  args.batch_size, args.num_workers) for split in ("train", "val")}
    pp.fit(net.eval(), LazyFeatures(net, loaders))
    info = pp.scorer.vaccination
    print(pp.scorer.report.summary())
    print(f"adapter: {info['path']} ({'loaded from cache' if info['cached'] else 'trained'}, "
          f"{info['train_size']} ID features)")
    print(f"push {info['before']['push']:.4f} -> {info['after']['push']:.4f}; "
          f"pull {info['before']['pull']:.4f} -> {info['after']['pull']:.4f}")
    print(json.dumps({"config": args.config, **{k: info[k] for k in ("key", "path", "cached")}}))
    return 0
