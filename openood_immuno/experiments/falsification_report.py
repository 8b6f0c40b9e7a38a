"""The outputs of the falsification test (:mod:`openood_immuno.experiments.falsification`):
``falsification.md`` (provenance, the verdict, values and paired deltas per metric),
``falsification.csv`` (one row per variant and seed, then means, stds and paired deltas) and
``falsification.png`` (each variant's paired delta to ``immuno`` per metric), each written
atomically by :func:`write_falsification`.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from openood_immuno.core.cache import atomic_write, atomic_write_text
from .falsification import FalsificationResult, regime_line
from .falsification_verdict import _fmt, overall_verdict, summarize, verdicts
from .variants import NO_ANTIBODIES, REFERENCE

HEADLINE = ("ACC", "AUROC_near", "FPR95_near", "msp_near", "AUROC_far", "FPR95_far", "msp_far", "msp_id",
            "abcos_id_before",
            "abcos_id_after", "abcos_near_before", "abcos_near_after", "abcos_far_before",
            "abcos_far_after", "train_push_before", "train_push_after")
PLOTTED = ("ACC", "AUROC_near", "AUROC_far", "FPR95_near", "abcos_id_after", "abcos_near_after")


def falsification_csv(result: FalsificationResult) -> str:
    """Wide CSV: one row per (variant, seed), then per variant its mean and std, then per
    non-reference variant the paired deltas' mean and std (``statistic`` column)."""
    summary = summarize(result)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variant", "postprocessor", "statistic", "seed", *result.metrics])
    for v in result.variants:
        for s in result.seeds:
            writer.writerow([v.label, v.postprocessor, "value", s,
                             *[repr(result.per_seed[v.label][s][m]) for m in result.metrics]])
    for kind, rows in (("", summary["value"]), ("delta_", summary["delta"])):
        for v in result.variants:
            if v.label not in rows:
                continue
            for i, stat in enumerate(("mean", "std")):
                writer.writerow([v.label, v.postprocessor, kind + stat, "",
                                 *[repr(rows[v.label][m][i]) for m in result.metrics]])
    return buf.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows]]


def falsification_markdown(result: FalsificationResult) -> str:
    summary = summarize(result)
    prov = result.provenance
    labels = [v.label for v in result.variants]
    lines = ["# Falsification test of Immuno-VLM's antibodies", "",
             "Produced by `" + prov.get("command", "openood_immuno.experiments.falsification") + "`.", ""]
    for key in ("model", "pretrained", "data_root"):
        if key in prov:
            lines.append(f"- {key}: `{prov[key]}`")
    lines += [f"- training seeds: {', '.join(map(str, result.seeds))} (mean ± sample std over seeds)",
              f"- `--pp-arg` overrides (NAME = a variant, or `*` for every variant that has the key): "
              f"{prov.get('pp_args') or 'none'}",
              f"- classifier max-softmax temperature T = {prov.get('msp_temperature')}", "",
              "Variants:", ""]
    lines += [f"- `{v.label}` (`{v.postprocessor}`"
              + (f", {dict(v.overrides)}" if v.overrides else "") + f"): {v.description}"
              for v in result.variants]
    found = verdicts(result)
    verdict_rows = [[q.question, q.metric, _fmt(*q.delta, signed=True), q.answer] for q in found]
    if verdict_rows:
        confidence = next(q for q in found if q.metric == "msp_ood (mean)")
        lines += ["", "## Verdict on this run", "",
                  f"**Verdict on the antibody claim: {overall_verdict(result)}** -- {regime_line(prov)}, "
                  f"{len(result.seeds)} training seeds.", "",
                  f"**Confidence criterion** (the review: antibodies must lower the mean max-softmax on "
                  f"held-out OOD; delta {_fmt(*confidence.delta, signed=True)}): {confidence.answer}.", "",
                  f"Paired deltas `{NO_ANTIBODIES} - {REFERENCE}` over seeds (mean ± std); the rule is "
                  "in docs/immuno_vlm.md, \"Falsification\". With random or untrained weights the "
                  "answers say nothing about the method.", ""]
        lines += _table(["question", "metric", "delta", "answer"], verdict_rows)
    headline = [m for m in HEADLINE if m in result.metrics]
    lines += ["", "## Values (mean ± std over seeds)", ""]
    lines += _table(["metric", *labels], [[m, *[_fmt(*summary["value"][l][m]) for l in labels]]
                                          for m in headline])
    lines += ["", f"## Deltas vs `{REFERENCE}` (variant - {REFERENCE}, paired per seed)", ""]
    others = [l for l in labels if l != REFERENCE]
    lines += _table(["metric", *others], [[m, *[_fmt(*summary["delta"][l][m], signed=True) for l in others]]
                                          for m in headline])
    lines += ["", "## Mean confidence per set (mean ± std over seeds)", "",
              "`conf`: the variant's own confidence (its own scale: compare within a column); "
              "`msp`: its classifier's max-softmax (one scale for all).", ""]
    per_set = [m for m in result.metrics if m.startswith(("conf_", "msp_"))]
    lines += _table(["metric", *labels], [[m, *[_fmt(*summary["value"][l][m]) for l in labels]]
                                          for m in per_set])
    lines += ["", "Metrics: ACC, AUROC and FPR@95 in %; `abcos_*`: mean nearest-antibody cosine "
              "(before: frozen features; after: the variant's adapter) against the full method's "
              "antibodies of the same seed; `train_push_*`: push loss on the training set before and "
              "after vaccination.", ""]
    return "\n".join(lines)


def delta_panels(result: FalsificationResult) -> dict[str, dict]:
    """What :func:`plot_falsification` draws, per plotted metric: the reference's mean and std
    (``immuno``) and each other variant's paired delta ``variant - immuno`` (mean, std over seeds)."""
    summary = summarize(result)
    others = [v.label for v in result.variants if v.label != REFERENCE]
    return {m: {"reference": summary["value"][REFERENCE][m],
                "deltas": [(label, *summary["delta"][label][m]) for label in others]}
            for m in PLOTTED if m in result.metrics}


def falsification_figure(result: FalsificationResult):
    """One panel per metric: each variant's paired delta to ``immuno`` (mean, std error bar over
    seeds) as a point around a zero line, labelled with its value, so a 0.4-point difference is
    as visible as a 20-point one; the panel title gives immuno's own value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = delta_panels(result)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 3.6), squeeze=False)
    for ax, (metric, panel) in zip(axes[0], panels.items()):
        labels = [d[0] for d in panel["deltas"]]
        x = np.arange(len(labels))
        ax.axhline(0.0, color="k", lw=0.9)
        for i, (label, mean, std) in enumerate(panel["deltas"]):
            ax.errorbar([i], [mean], yerr=[0.0 if math.isnan(std) else std], fmt="o", color=f"C{i + 1}",
                        capsize=4)
            if not math.isnan(mean):
                ax.annotate(f"{mean:+.2f}", (i, mean), textcoords="offset points", xytext=(6, 0),
                            fontsize=7, va="center")
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ref_mean, ref_std = panel["reference"]
        ax.set_title(f"{metric}\n{REFERENCE} = {_fmt(ref_mean, ref_std)}", fontsize=8)
        ax.set_ylabel(f"delta to {REFERENCE}", fontsize=8)
    fig.suptitle(f"Falsification test: paired deltas to {REFERENCE}, {len(result.seeds)} training seeds "
                 "(error bars: std)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_falsification(result: FalsificationResult, path: str | Path) -> Path:
    """:func:`falsification_figure` written atomically to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = falsification_figure(result)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return Path(path)


def write_falsification(result: FalsificationResult, output_dir: str | Path) -> list[Path]:
    """``falsification.md``, ``falsification.csv`` and ``falsification.png`` in ``output_dir``,
    each written atomically."""
    out = Path(output_dir)
    return [atomic_write_text(falsification_markdown(result), out / "falsification.md"),
            atomic_write_text(falsification_csv(result), out / "falsification.csv"),
            plot_falsification(result, out / "falsification.png")]
