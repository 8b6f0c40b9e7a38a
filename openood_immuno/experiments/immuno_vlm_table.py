"""``report``: the table of ``eval --benchmark immuno_vlm`` runs (Immuno-VLM's Table 1 columns).

ID ImageNet-1K; ImageNet-O (near-OOD), iNaturalist and Textures (far-OOD). Per set: AUROC,
FPR@95 (OpenOOD v1.5's: share of ID flagged OOD at 95% OOD recall, from ``ood.csv``) and F1@TPR95
(F1 of OOD detection, OOD positive, at the threshold accepting 95% of the ID test images; from the
run's saved scores, :mod:`.score_metrics`); then ID-ACC (the postprocessor's own predictions),
zero-shot accuracy and the F-score averaged over the three sets: F1@TPR95 for every run, and F1@tau
(at the postprocessor's own reject decision) for those that decide.
"""
from __future__ import annotations

from openood_immuno.data.benchmarks import IMMUNO_VLM_OOD
from .score_metrics import first_seed_only, score_metrics

SETS = (*IMMUNO_VLM_OOD["near"], *IMMUNO_VLM_OOD["far"])
_NAMES = {"imagenet_o": "ImageNet-O", "inaturalist": "iNaturalist", "textures": "Textures"}


#: the heading of the section this module adds to report.md (the report command's summary looks for it)
HEADING = "## Our runs: Immuno-VLM's benchmark (ImageNet-1K vs ImageNet-O, iNaturalist, Textures)"

def _mean(values: list) -> str:
    return f"{sum(values) / len(values):.2f}" if values and len(values) == len(SETS) else "-"


def markdown_table(runs: list[dict], problems: list[str]) -> list[str]:
    """The section of report.md (nothing when there is no ``immuno_vlm`` run)."""
    mine = [r for r in runs if r["benchmark"] == "immuno_vlm"]
    if not mine:
        return []
    head = " | ".join(f"{_NAMES[s]} {m}" for s in SETS for m in ("AUROC", "FPR@95", "F1@TPR95"))
    lines = ["", HEADING, "",
             "The sets of Immuno-VLM's Table 1 (`--benchmark immuno_vlm`). FPR@95 is OpenOOD v1.5's; "
             "F1@TPR95 is the F1 of OOD detection (OOD positive) at the threshold that accepts 95% of the "
             "ID test images, computed from the run's saved scores (a run over several seeds: its first "
             "seed); F1@tau (postprocessors that decide) is at their own reject decision. Immuno-VLM's "
             "text does not define its \"Avg -Score\" column, so neither is its number's definition.", "",
             f"| run | postprocessor | protocol | {head} | ID acc | zero-shot acc | avg F1@TPR95 | avg F1@tau |",
             "|" + "---|" * (3 + 3 * len(SETS) + 4)]
    for r in mine:
        rows = r["rows"]
        scored = score_metrics(r, SETS, problems)
        f1 = [scored[s]["F1@TPR95"] for s in SETS if s in scored]
        cells = [r["run"], r["name"], r["protocol"]]
        for s in SETS:
            cells += [rows[s]["AUROC"], rows[s]["FPR@95"], f"{scored[s]['F1@TPR95']:.2f}" if s in scored else "-"]
        tau = [float(rows[s]["F1@tau"]) for s in SETS if rows[s].get("F1@tau")]
        cells += [rows["nearood"]["ACC"], rows["nearood"].get("ACC_zeroshot") or "-",
                  _mean(f1) + (" (first seed)" if f1 and first_seed_only(r) else ""), _mean(tau)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines
