"""``openood-immuno antibodies``: build (or resume) an Immuno-VLM antibody bank, then summarise it."""
from __future__ import annotations

import logging
from pathlib import Path

from .args import HelpFormatter, add_model_args, add_progress_arg, check_out_file, net_from_args, resolve_device

DESCRIPTION = """\
Generate antibodies (near-OOD look-alikes and contextual phrases, Immuno-VLM Phase 2) for every
ID class and save them as a bank JSON; classes already in --out are skipped, so an interrupted
run resumes. The summary prints the counts per class and, under a CLIP net (--model,
--pretrained), how many survive band-pass filtration; the per-class table and the full list of
classes that fell short go to <out>.summary.json.

example (offline):
  openood-immuno antibodies --id imagenet --generator wordnet --out bank.json"""


def add_parser(subparsers) -> None:
    ab = subparsers.add_parser("antibodies", help="generate an Immuno-VLM antibody bank (resumable)",
                               description=DESCRIPTION, formatter_class=HelpFormatter)
    ab.add_argument("--id", dest="id_spec", default="imagenet",
                    help="'imagenet' or a text file with one ID class name per line")
    ab.add_argument("--generator", default="wordnet",
                    help="wordnet | hf:NAME_OR_PATH | openai:MODEL@URL | openai:URL (the first model "
                         "of GET URL/models)")
    ab.add_argument("--out", required=True, help="bank JSON; classes already in it are skipped")
    ab.add_argument("--n-near", type=int, default=10, help="near-OOD antibodies per class")
    ab.add_argument("--n-contextual", type=int, default=5, help="contextual antibodies per class")
    ab.add_argument("--seed", type=int, default=0, help="seed of the generator (sampling, WordNet draws)")
    llm = ab.add_argument_group("LLM generators")
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable with the key")
    llm.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request, in total")
    llm.add_argument("--retries", type=int, default=2, help="extra tries per prompt when short")
    llm.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    llm.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    llm.add_argument("--llm-device", default="auto",
                     help="hf: device of the language model; auto: cuda when available, else cpu")
    flt = ab.add_argument_group("band-pass summary (needs CLIP weights; skipped with a note when "
                                "they cannot be loaded)")
    add_model_args(flt)
    flt.add_argument("--delta-low", type=float, default=0.55, help="lower band-pass bound")
    flt.add_argument("--delta-high", type=float, default=0.92, help="upper band-pass bound")
    flt.add_argument("--no-filter-summary", action="store_true", help="skip the CLIP filtering summary")
    add_progress_arg(ab)
    ab.set_defaults(func=run)


def _summary_path(out: str) -> Path:
    p = Path(out)
    return p.with_name(p.stem + ".summary.json")


def run(args) -> int:
    from openood_immuno.core.cache import atomic_write_json
    from openood_immuno.methods.immuno.bank_quality import bank_quality, quality_lines
    from openood_immuno.methods.immuno.generators import build_bank, id_classes, make_generator

    check_out_file(args.out, "--out")
    classes = id_classes(args.id_spec)
    options = {}
    if args.generator != "wordnet":
        options = {"retries": args.retries, "temperature": args.temperature,
                   "max_new_tokens": args.max_new_tokens, "device": resolve_device(args.llm_device),
                   "api_key_env": args.api_key_env, "timeout_s": args.timeout}
    generator = make_generator(args.generator, args.n_near, args.n_contextual, args.seed, **options)
    bank = build_bank(generator, classes, args.out, progress=not args.no_progress,
                      short_log_level=logging.DEBUG)
    counts = bank.counts()
    total = {k: sum(c[k] for c in counts.values()) for k in ("near_ood", "contextual")}
    summary_path = _summary_path(args.out)
    print(f"bank: {args.out} ({bank.provenance['generator']}, {bank.provenance['model']})")
    print(f"classes: {len(bank.class_names)} ({len(counts)} distinct names); antibodies: {len(bank)} "
          f"({total['near_ood']} near-OOD, {total['contextual']} contextual)")
    if bank.short:
        short = sorted(bank.short)
        print(f"{len(short)} classes fell short of {args.n_near} near-OOD / {args.n_contextual} "
              f"contextual (e.g. {', '.join(short[:3])}): the full list is in {summary_path}")
    quality = bank_quality(bank)
    print("\n".join(quality_lines(quality)))
    rows = [{"class": n, **counts[n], "before": sum(counts[n].values())}
            for n in dict.fromkeys(bank.class_names) if n in counts]
    pending = bank.missing()
    summary = {"bank": str(args.out), "provenance": bank.provenance, "short": sorted(bank.short),
               "short_counts": {n: bank.short[n] for n in sorted(bank.short)}, "pending": pending,
               "quality": quality}
    if not args.no_filter_summary and rows:
        summary["filter"] = _filter_summary(args, bank, rows)
    summary["per_class"] = rows
    print(f"per-class counts: {atomic_write_json(summary, summary_path)}")
    if pending:
        print(f"{len(pending)} classes got no answer and are pending (e.g. {pending[:3]}): re-run the "
              "same command to retry them")
        return 1
    return 0


def _filter_summary(args, bank, rows: list[dict]) -> dict:
    """Band-pass counts per class under text prototypes of ``--model``; fills ``rows[*]['after']``.

    The bank is the product and is saved already: when the CLIP net cannot be built (no
    weights offline), the summary is skipped with one line saying why and how to get it.
    """
    from openood_immuno.methods.immuno.encode import encode_antibodies
    from openood_immuno.methods.immuno.filtration import FilterReport, band_pass_mask
    from .errors import one_line

    names = [r["class"] for r in rows]
    try:
        net = net_from_args(args, names)
    except Exception as exc:  # any failure to load the net: the bank stays valid
        reason = one_line(exc)
        print(f"band-pass summary skipped: {reason} -- pass --model/--pretrained with local weights "
              "(e.g. --pretrained /path/to/checkpoint.pt) to get it, or --no-filter-summary")
        return {"skipped": reason}
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
