"""``report``: each run beside the published rows of the matching paper table.

The tables are package data (:mod:`openood_immuno.data.published`): ANTS's Table 1 (the MOS four,
``--benchmark mos``), ANTS's Table 2 (OpenOOD v1.5's near/far, ``--benchmark openood``) and
Immuno-VLM's Table 1 (``--benchmark immuno_vlm``). Every row is marked ``run here`` or ``quoted
(paper, table)``.

**Rule.** A run is set beside a table when its benchmark and ID set are the table's. It is
*comparable* when its backbone is the table's (open_clip model and weights, e.g. ``ViT-B-16`` /
``openai`` for CLIP ViT-B/16) and its weights are not random; otherwise its row is still shown,
marked ``NOT COMPARABLE`` with the reason (a test run on ImmunoTiny-ViT, random weights, another
backbone). A table with no run of its benchmark is shown with its quoted rows only.

**Our cells.** AUROC, ACC: the run's ``ood.csv``. FPR95: in the table's direction: OpenOOD v1.5's
``FPR@95`` from ``ood.csv`` when the table uses it, or is silent about it (then the cell says
``OpenOOD``); the share of OOD accepted at 95% ID TPR computed from the run's saved scores when
the table uses that direction (:mod:`.score_metrics`; group rows are the mean over the group's
sets). ``avg_fscore``: the mean over the benchmark's OOD sets of the postprocessor's ``F1@tau``
when it decides, else of ``F1@TPR95`` from the saved scores (the cell names which).
"""
from __future__ import annotations

from openood_immuno.core.status import OK, RANDOM_WEIGHTS
from openood_immuno.data.benchmarks import get_benchmark
from openood_immuno.data.published import FPR95_DIRECTIONS, PublishedTable, published_tables
from .score_metrics import first_seed_only, score_metrics


def _arch(run: dict) -> tuple[str, str]:
    from .report import _arch as arch   # report imports this module inside markdown_report

    return arch(run)


def comparability(run: dict, table: PublishedTable) -> str:
    """``""`` when the run is comparable with the table's rows, else why not."""
    model, weights = _arch(run)
    why = []
    if "RANDOM WEIGHTS" in run["status"]:
        why.append("random weights")
    if (model, weights) != (table.open_clip["model"], table.open_clip["pretrained"]):
        why.append(f"backbone {model} ({weights or 'no weights'}), not {table.backbone} "
                   f"({table.open_clip['model']}, {table.open_clip['pretrained']})")
    if run["meta"].get("status", {}).get("state", "ok") not in (OK, RANDOM_WEIGHTS):
        why.append("status " + "; ".join(p for p in run["status"].split("; ") if not p.startswith("RANDOM WEIGHTS")))
    return "; ".join(why)


def _groups(benchmark: str) -> dict[str, list[str]]:
    bench = get_benchmark("imagenet", benchmark)
    return {"nearood": list(bench.near), "farood": list(bench.far)}


def run_cells(run: dict, table: PublishedTable, problems: list[str]) -> list[str]:
    """The run's cells in the table's columns (see the module's rule)."""
    rows, groups = run["rows"], _groups(table.benchmark)
    sets = [s for g in groups.values() for s in g]
    needs_scores = table.fpr95_direction == "ood_at_95_id_tpr" or (
        "avg_fscore" in table.columns and "F1@tau" not in run["meta"].get("columns", []))
    scored = score_metrics(run, sets, problems) if needs_scores else {}
    seed_note = " (first seed)" if scored and first_seed_only(run) else ""
    cells = []
    for col in table.columns:
        if col == "avg_fscore":
            if "F1@tau" in run["meta"].get("columns", []):
                vals = [float(rows[s]["F1@tau"]) for s in sets if s in rows]
                cells.append(f"{sum(vals) / len(vals):.2f} (F1@tau)" if len(vals) == len(sets) else "-")
            else:
                vals = [scored[s]["F1@TPR95"] for s in sets if s in scored]
                cells.append(f"{sum(vals) / len(vals):.2f} (F1@TPR95{seed_note})" if len(vals) == len(sets) else "-")
            continue
        where, _, metric = col.rpartition("_")
        if where not in rows:
            cells.append("-")
        elif metric == "auroc":
            cells.append(rows[where]["AUROC"])
        elif metric == "acc":
            cells.append(rows[where]["ACC"])
        elif table.fpr95_direction == "ood_at_95_id_tpr":
            members = groups.get(where, [where])
            vals = [scored[s]["FPR95_id_tpr"] for s in members if s in scored]
            cells.append(f"{sum(vals) / len(vals):.2f}{seed_note}" if len(vals) == len(members) else "-")
        else:
            cells.append(rows[where]["FPR@95"] + (" (OpenOOD)" if table.fpr95_direction == "unstated" else ""))
    return cells


def _header(table: PublishedTable) -> list[str]:
    notes = table.column_notes or {}
    names = [f"{c} ({notes[c]})" if c in notes else c for c in table.columns]
    return ["| row | method | backbone / run | " + " | ".join(names) + " |",
            "|" + "---|" * (3 + len(table.columns))]


def _paper_line(table: PublishedTable) -> str:
    p = table.paper
    return (f"{p['short']}: \"{p['title']}\" (venue: {p['venue'] or 'not stated in its text'}; arXiv: "
            f"{p['arxiv'] or 'not stated in its text'}); {table.table}, backbone {table.backbone}, ID "
            f"{table.id}, our `--benchmark {table.benchmark}`. Its FPR95: "
            f"{FPR95_DIRECTIONS[table.fpr95_direction]} ({table.fpr95_direction_basis})"
            + ("; our FPR95 cells are OpenOOD v1.5's, marked (OpenOOD)." if table.fpr95_direction == "unstated"
               else "."))


def markdown_sections(runs: list[dict], problems: list[str]) -> list[str]:
    """The report's "Beside published results" part: one table per published table."""
    lines = ["", "## Beside published results", "",
             "Each run is set beside the published table of its benchmark (`run here`), every quoted "
             "row is marked `quoted (paper, table)`. A run is comparable only on the table's backbone "
             "with real weights; other runs are marked NOT COMPARABLE with the reason. Our FPR95 cells "
             "follow the table's direction (OpenOOD v1.5's FPR@95 from ood.csv, or the share of OOD "
             "accepted at 95% ID TPR from the run's saved scores); `avg_fscore` is the mean over the "
             "benchmark's OOD sets of F1@tau for postprocessors that decide, else of F1@TPR95 (F1 of "
             "OOD detection, OOD positive, at the threshold accepting 95% of the ID test images)."]
    for table in published_tables():
        mine = [r for r in runs if r["benchmark"] == table.benchmark and r["meta"].get("id", "imagenet") == table.id]
        lines += ["", f"### {table.source} (`--benchmark {table.benchmark}`)", "", _paper_line(table), ""]
        if not mine:
            lines += [f"No run of `--benchmark {table.benchmark}` here: quoted rows only.", ""]
        elif all(comparability(r, table) for r in mine):
            lines += ["No run here is comparable with these quoted rows (see each run's mark).", ""]
        lines += _header(table)
        for r in mine:
            why = comparability(r, table)
            mark = f"run here, NOT COMPARABLE: {why}" if why else "run here"
            model, weights = _arch(r)
            lines.append(f"| {mark} | {r['name']} | {model} ({weights or '-'}), {r['protocol']} protocol, "
                         f"{r['run']} | " + " | ".join(run_cells(r, table, problems)) + " |")
        for row in table.rows:
            lines.append(f"| quoted ({table.source}) | {row.method} | {row.backbone}, {row.group} | "
                         + " | ".join(table.cell(row.values[c]) for c in table.columns) + " |")
    return lines
