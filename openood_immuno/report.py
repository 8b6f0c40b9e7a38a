"""``openood-immuno report RESULTS_DIR``: our runs beside published numbers, leaderboard rows, plots.

RESULTS_DIR is an ``eval --output-dir``: one folder per run (``<id>_<model>_<weights>``) holding
one folder per postprocessor (``<name>`` or ``<name>_stream``) with ``ood.csv``, per-set
``scores_<set>.npz`` and, for scorers that calibrate, ``artifacts.npz``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from .cache import atomic_write_text

LEADERBOARD_COLUMNS = ("Training", "Postprocessor", "Near-OOD_AUROC", "Far-OOD_AUROC", "ID_Accuracy",
                       "Outlier_Data", "Arch", "Additional_Description")
_PUBLISHED = Path(__file__).with_name("data") / "published_results.json"


def published_results() -> dict:
    """Published CLIP ViT-B/16 ImageNet-1K numbers with their sources (package data)."""
    return json.loads(_PUBLISHED.read_text(encoding="utf-8"))


def find_runs(results_dir: str) -> list[dict]:
    """Every ``ood.csv`` under ``results_dir`` with its run, postprocessor and protocol."""
    runs = []
    for path in sorted(Path(results_dir).glob("*/*/ood.csv")):
        with open(path, newline="") as fh:
            rows = {r["dataset"]: r for r in csv.DictReader(fh)}
        pp = path.parent.name
        runs.append({"run": path.parent.parent.name, "postprocessor": pp.removesuffix("_stream"),
                     "protocol": "stream" if pp.endswith("_stream") else "openood",
                     "folder": path.parent, "rows": rows})
    if not runs:
        raise FileNotFoundError(f"no */*/ood.csv under {results_dir!r}: pass the --output-dir of "
                                "`openood-immuno eval`")
    return runs


def _arch(run_folder: Path) -> tuple[str, str]:
    """(model, weights) of a run: from its ``run.json``, else parsed from ``<id>_<model>_<weights>``."""
    meta = run_folder / "run.json"
    if meta.is_file():
        data = json.loads(meta.read_text(encoding="utf-8"))
        return data["model"], os.path.splitext(os.path.basename(str(data["pretrained"]).rstrip("/")))[0]
    parts = run_folder.name.split("_")
    return ("_".join(parts[1:-1]), parts[-1]) if len(parts) > 2 else (run_folder.name, "")


def leaderboard_rows(runs: list[dict]) -> list[dict]:
    """Rows in the OpenOOD leaderboard CSV format (``results/imagenet1k_ood.csv``)."""
    out = []
    for r in runs:
        arch, weights = _arch(r["folder"].parent)
        rows = r["rows"]
        out.append({"Training": f"CLIP zero-shot ({weights})" if weights else "CLIP zero-shot",
                    "Postprocessor": r["postprocessor"],
                    "Near-OOD_AUROC": rows["nearood"]["AUROC"], "Far-OOD_AUROC": rows["farood"]["AUROC"],
                    "ID_Accuracy": rows["nearood"]["ACC"], "Outlier_Data": "No", "Arch": arch,
                    "Additional_Description": f"openood-immuno, {r['protocol']} protocol, FPR@95 OpenOOD v1.5"})
    return out


def markdown_report(runs: list[dict]) -> str:
    lines = ["# openood-immuno results", "",
             "FPR@95 here is OpenOOD v1.5's: share of ID flagged OOD at 95% OOD recall (lower is better).", "",
             "## Our runs", "",
             "| run | postprocessor | protocol | near FPR@95 | near AUROC | far FPR@95 | far AUROC | ID acc | other sets (AUROC) |",
             "|---|---|---|---|---|---|---|---|---|"]
    core = {"ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"}
    for r in runs:
        rows = r["rows"]
        extra = ", ".join(f"{k} {v['AUROC']}" for k, v in rows.items() if k not in core) or "-"
        lines.append(f"| {r['run']} | {r['postprocessor']} | {r['protocol']} | {rows['nearood']['FPR@95']} | "
                     f"{rows['nearood']['AUROC']} | {rows['farood']['FPR@95']} | {rows['farood']['AUROC']} | "
                     f"{rows['nearood']['ACC']} | {extra} |")
    pub = published_results()
    lines += ["", "## Published (CLIP ViT-B/16, ImageNet-1K)", "", pub["note"], "",
              "| method | benchmark | numbers | source |", "|---|---|---|---|"]
    for row in pub["rows"]:
        nums = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("method", "benchmark", "source"))
        lines.append(f"| {row['method']} | {row['benchmark']} | {nums} | {row['source']} |")
    lines += ["", "## Leaderboard rows", "", "| " + " | ".join(LEADERBOARD_COLUMNS) + " |",
              "|" + "---|" * len(LEADERBOARD_COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in LEADERBOARD_COLUMNS) + " |" for row in leaderboard_rows(runs)]
    return "\n".join(lines) + "\n"


def plot_run(folder: Path, out_dir: Path, title: str) -> list[Path]:
    """ROC curves per OOD set, ID-vs-OOD score histograms, per-class EVT thresholds (if any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    scores = {p.stem.removeprefix("scores_"): np.load(p) for p in sorted(folder.glob("scores_*.npz"))}
    written = []
    id_scores = scores.pop("id", None)
    if scores:
        fig, (ax_roc, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))
        if id_scores is not None:
            ax_hist.hist(id_scores["conf"], bins=40, alpha=0.6, density=True, label="ID (test)")
        for name, s in scores.items():
            # openood protocol: the OOD list alone (ID from scores_id); stream protocol: a whole
            # ID + OOD stream (label -1 = OOD)
            if id_scores is None:
                conf, is_ood = s["conf"], (s["label"] == -1).astype(int)
                if name == next(iter(scores)):  # ID scores differ a little from stream to stream
                    ax_hist.hist(conf[is_ood == 0], bins=40, alpha=0.6, density=True,
                                 label=f"ID (in the {name} stream)")
                ood_conf = conf[is_ood == 1]
            else:
                conf = np.concatenate([id_scores["conf"], s["conf"]])
                is_ood = np.concatenate([np.zeros(len(id_scores["conf"])), np.ones(len(s["conf"]))])
                ood_conf = s["conf"]
            fpr, tpr, _ = roc_curve(is_ood, -conf)
            ax_roc.plot(fpr, tpr, label=name)
            ax_hist.hist(ood_conf, bins=40, alpha=0.35, density=True, histtype="stepfilled", label=name)
        ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax_roc.set(xlabel="ID flagged OOD (FPR)", ylabel="OOD flagged OOD (TPR)", title=f"ROC: {title}")
        ax_hist.set(xlabel="confidence (higher = more ID)", ylabel="density", title="score histograms")
        ax_roc.legend(fontsize=8)
        ax_hist.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{title}_roc_hist.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    art = folder / "artifacts.npz"
    if art.exists():
        data = np.load(art)
        if "evt_threshold" in data:
            thr = np.asarray(data["evt_threshold"])
            pooled = np.asarray(data["evt_pooled"]) if "evt_pooled" in data else np.zeros(len(thr), bool)
            fig, ax = plt.subplots(figsize=(8, 3.5))
            idx = np.arange(len(thr))
            ax.plot(idx[~pooled], thr[~pooled], ".", ms=3, label=f"per-class fit ({int((~pooled).sum())})")
            ax.plot(idx[pooled], thr[pooled], "x", ms=3, label=f"pooled fit ({int(pooled.sum())})")
            ax.legend(fontsize=8)
            ax.set(xlabel="ID class index", ylabel="DIS threshold (Weibull CDF = 0.5)",
                   title=f"per-class EVT thresholds: {title}")
            fig.tight_layout()
            path = out_dir / f"{title}_evt_thresholds.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def write_report(results_dir: str, out_dir: str | None = None) -> Path:
    """Write ``report.md``, ``leaderboard.csv`` and the plots; returns the markdown path."""
    runs = find_runs(results_dir)
    out = Path(out_dir or os.path.join(results_dir, "report"))
    out.mkdir(parents=True, exist_ok=True)
    for r in runs:
        plot_run(r["folder"], out, f"{r['postprocessor']}_{r['protocol']}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(leaderboard_rows(runs))
    atomic_write_text(buf.getvalue(), out / "leaderboard.csv")
    return atomic_write_text(markdown_report(runs), out / "report.md")
