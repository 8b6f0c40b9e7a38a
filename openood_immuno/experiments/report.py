"""``openood-immuno report RESULTS_DIR``: our runs beside published numbers, leaderboard rows, plots.

RESULTS_DIR is an ``eval --output-dir``. Only complete runs are read: folders
``<id>_<model>_<weights>/<postprocessor>[_stream]-<key>/`` holding a ``run.json`` (written last,
see :mod:`openood_immuno.experiments.results`), and of each run only the files its ``run.json`` lists
(``ood.csv``, ``scores_<set>.npz``, ``artifacts.npz``), so a plot never shows a set of another
run. Hidden folders (``.tmp-*`` of an interrupted run) and folders without ``run.json`` are
skipped. ``ood.csv`` is read by its header (:func:`read_ood_csv`): a row with a cell too few or
too many, a metric that is not a number, or columns other than ``run.json`` lists make that run
skipped, never shifted into other columns. Whatever cannot be read (such a table, a damaged
file, a folder without permission, scores with NaN) is named in one warning line and in
report.md, and the rest of the report is written. A run whose status is not ``ok`` is shown
as e.g. ``ants [DEGRADED: ...]`` in every table, never as ``ants``.

Runs of ``eval --benchmark mos`` (the MOS four: iNaturalist, SUN, Places, Textures; no near-OOD
row) get a table of their own in report.md and their own ``leaderboard_mos.csv`` (OpenOOD's
leaderboard format has near/far columns only); ``leaderboard.csv`` holds the OpenOOD-benchmark runs.
Runs of ``eval --benchmark immuno_vlm`` get their table too (:mod:`.immuno_vlm_table`). Every run is
set beside the published rows of its benchmark's paper table (:mod:`.published_rows`), each row
marked ``run here`` or ``quoted (paper, table)``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import zipfile
from pathlib import Path

from openood_immuno.core.cache import atomic_write_text
from openood_immuno.data.benchmarks import IMMUNO_VLM_OOD, MOS_FOUR
from .results import MANIFEST

log = logging.getLogger(__name__)
# OpenOOD's leaderboard columns (results/imagenet1k_ood.csv), then ours: frozen CLIP's accuracy
# beside ID_Accuracy (the postprocessor's own predictions); drop it to paste rows into OpenOOD's.
LEADERBOARD_COLUMNS = ("Training", "Postprocessor", "Near-OOD_AUROC", "Far-OOD_AUROC", "ID_Accuracy",
                       "Outlier_Data", "Arch", "Additional_Description", "ID_Accuracy_zeroshot")
# the MOS four, as the MCM / NegLabel / ANTS tables report them: per set and averaged
_MOS_NAMES = {"inaturalist": "iNaturalist", "sun": "SUN", "places": "Places", "textures": "Textures"}
MOS_LEADERBOARD_COLUMNS = ("Training", "Postprocessor",
                           *(f"{_MOS_NAMES[s]}_{m}" for s in MOS_FOUR for m in ("FPR@95", "AUROC")),
                           "Average_FPR@95", "Average_AUROC", "ID_Accuracy", "Arch",
                           "Additional_Description", "ID_Accuracy_zeroshot")
_REQUIRED_ROWS = {"openood": ("nearood", "farood"), "mos": (*MOS_FOUR, "farood"),
                  "immuno_vlm": (*IMMUNO_VLM_OOD["near"], *IMMUNO_VLM_OOD["far"], "nearood", "farood")}
# what a damaged, truncated or foreign file raises when read
_PLOT_NAME = re.compile(r".+-[0-9a-f]{12}_(roc_hist|evt_thresholds)\.png$")
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, csv.Error, UnicodeDecodeError)


def _unreadable(problems: list[str], path: Path, exc: BaseException) -> None:
    line = f"cannot read {path}: {type(exc).__name__}: {exc}".rstrip(": ")
    log.warning("report: %s (skipped)", line)
    problems.append(line)


_OPENOOD_METRICS = ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")


class MalformedTable(ValueError):
    """An ``ood.csv`` that is not the table its run wrote (the message names the line)."""


def read_ood_csv(path: Path, columns=None) -> dict[str, dict[str, str]]:
    """``{dataset: {column: cell}}`` of an ``ood.csv``, read by its header, or
    :class:`MalformedTable` naming the line: a row with more or fewer cells than the header (its
    values would land under other columns), a metric cell that is not a number, a dataset
    named twice, a header without OpenOOD's columns or without ``columns`` (the metrics
    ``run.json`` says the run wrote) in their order. Other columns (``status``) are kept as text."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise MalformedTable("empty file, no header")
        metrics = list(columns) if columns is not None else list(_OPENOOD_METRICS)
        missing = [c for c in ("dataset", *_OPENOOD_METRICS) if c not in header]
        if missing or len(set(header)) != len(header):
            raise MalformedTable(f"line 1: header {header} " + (f"lacks {missing}" if missing else
                                                                 "names a column twice"))
        if [c for c in header if c in metrics] != metrics:
            raise MalformedTable(f"line 1: metric columns {[c for c in header if c in metrics]} differ "
                                 f"from those run.json lists {metrics}")
        numeric = [c for c in header if c in metrics or c.removeprefix("std_") in metrics]
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise MalformedTable(f"line {line}: {len(row)} cells for the {len(header)} columns of "
                                     f"the header (one {'too many' if len(row) > len(header) else 'missing'}"
                                     f"{'' if abs(len(row) - len(header)) == 1 else ' or more'}); "
                                     "its values would fall under other columns")
            cells = dict(zip(header, row))
            for c in numeric:
                try:
                    float(cells[c])
                except ValueError:
                    raise MalformedTable(f"line {line}: column {c} holds {cells[c]!r}, not a "
                                         "number") from None
            if cells["dataset"] in rows:
                raise MalformedTable(f"line {line}: dataset {cells['dataset']!r} appears twice")
            rows[cells["dataset"]] = cells
    return rows


def _read_run(folder: Path, problems: list[str]):
    path = folder / MANIFEST
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta.get("postprocessor"), str):
            raise ValueError("no 'postprocessor' entry")
        path = folder / "ood.csv"
        rows = read_ood_csv(path, meta.get("columns"))
        benchmark = _benchmark_of(meta, rows)
        for needed in _REQUIRED_ROWS[benchmark]:
            if needed not in rows:
                raise ValueError(f"no '{needed}' row (a --benchmark {benchmark} run)")
    except (*_READ_ERRORS, TypeError, AttributeError) as exc:
        _unreadable(problems, path, exc)
        return None
    states = {r.get("status") or "ok" for r in rows.values()}
    label = meta.get("status", {}).get("label", "ok")
    if label == "ok" and states != {"ok"}:  # ood.csv says more than run.json: believe the worse
        label = sorted(states - {"ok"})[0]
    pp = meta["postprocessor"]
    shown = meta.get("label") or pp  # the name with its regime, e.g. immuno [wordnet, 16-shot x 20]
    return {"run": f"{folder.parent.name}/{folder.name}", "postprocessor": pp,
            "name": shown if label == "ok" else f"{shown} [{label}]", "status": label, "benchmark": benchmark,
            "protocol": meta.get("protocol", "openood"), "folder": folder, "meta": meta, "rows": rows}


def _subfolders(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted (``OSError`` if it cannot be listed)."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir())


def _run_folders(root: Path, problems: list[str]) -> list[Path]:
    """``root/<prefix>/<run>`` folders (hidden ones skipped: ``.tmp-*`` of a run being written); a
    prefix folder that cannot be listed is named in ``problems`` (never skipped in silence)."""
    if not root.is_dir():
        return []             # find_runs names the fix
    prefixes = _subfolders(root)   # PermissionError naming root (the CLI prints it in one line)
    out = []
    for prefix in prefixes:
        try:
            out += _subfolders(prefix)
        except OSError as exc:
            _unreadable(problems, prefix, exc)
    return out


def _benchmark_of(meta: dict, rows: dict) -> str:
    """``openood``, ``mos`` or ``immuno_vlm``: ``run.json``'s ``benchmark`` (written since MOS runs were read),
    else the rows (an older MOS run: the four sets and no near-OOD row)."""
    benchmark = meta.get("benchmark")
    if benchmark is None:
        return "mos" if "nearood" not in rows and set(MOS_FOUR) <= set(rows) else "openood"
    if benchmark not in _REQUIRED_ROWS:
        raise ValueError(f"unknown benchmark {benchmark!r} in run.json (known: {sorted(_REQUIRED_ROWS)})")
    return benchmark


def find_runs(results_dir: str, problems: list[str] | None = None) -> list[dict]:
    """Every complete run (a folder with ``run.json``) under ``results_dir``.

    Unreadable files are appended to ``problems`` (one line each) and their run skipped.
    """
    problems = [] if problems is None else problems
    root = Path(results_dir)
    runs, incomplete = [], []
    for folder in _run_folders(root, problems):
        try:
            complete = (folder / MANIFEST).is_file()
            if not complete and (folder / "ood.csv").exists():
                incomplete.append(folder)
        except OSError as exc:       # a run folder we may not enter (permissions)
            _unreadable(problems, folder, exc)
            continue
        if complete:
            run = _read_run(folder, problems)
            if run is not None:
                runs.append(run)
    if incomplete:
        log.warning("report: %d folder(s) without %s skipped (an interrupted run, or made by an older "
                    "version: rerun eval), e.g. %s", len(incomplete), MANIFEST, incomplete[0])
    if not runs:
        raise FileNotFoundError(f"no complete run (a */*/{MANIFEST} folder) under {results_dir!r}"
                                + (f" ({len(incomplete)} incomplete folder(s) and "
                                   f"{len(problems)} unreadable file(s) skipped)" if incomplete or problems
                                   else "") + ": pass the --output-dir of `openood-immuno eval`")
    return runs


def _arch(run: dict) -> tuple[str, str]:
    """(model, weights) of a run, from its ``run.json``."""
    meta = run["meta"]
    model = os.path.basename(str(meta.get("model", "")))
    model = os.path.splitext(model)[0] if model.endswith(".json") else model
    return model, os.path.splitext(os.path.basename(str(meta.get("pretrained", "")).rstrip("/")))[0]


def _cell(row: dict, column: str) -> str:
    """A value of an ``ood.csv`` row, ``-`` where the column is absent (older runs, scorers
    without a decision rule)."""
    return row.get(column) or "-"


def _bank_note(run: dict) -> str:
    """``, bank sha256 ...`` of a run whose postprocessor names a bank (``describe``)."""
    described = run["meta"].get("describe") or {}
    sha = next((v.get("bank_sha256") for v in described.values()
                if isinstance(v, dict) and v.get("bank_sha256")), None)
    return f", bank sha256 {sha}" if sha else ""


def _notes(run: dict) -> str:
    """The postprocessor's ``note`` (e.g. Immuno's EVT pooled for every class), or ``-``."""
    status = run["meta"].get("status", {}).get("postprocessor_status") or {}
    return str(status.get("note") or "-")


def _training(run: dict) -> str:
    """``Training`` of a leaderboard row: frozen CLIP, or CLIP + a trained adapter."""
    weights = _arch(run)[1]
    clip = f"CLIP ({weights})" if weights else "CLIP"
    return f"{clip} + trained adapter" if run["meta"].get("trains") else \
        (f"CLIP zero-shot ({weights})" if weights else "CLIP zero-shot")


def leaderboard_rows(runs: list[dict]) -> list[dict]:
    """Rows in the OpenOOD leaderboard CSV format (``results/imagenet1k_ood.csv``), plus
    ``ID_Accuracy_zeroshot``, of the OpenOOD-benchmark runs. ``Training`` names a trained adapter
    for postprocessors that train."""
    out = []
    for r in runs:
        if r["benchmark"] != "openood":
            continue
        arch = _arch(r)[0]
        rows = r["rows"]
        out.append({"Training": _training(r),
                    "Postprocessor": r["name"],
                    "Near-OOD_AUROC": rows["nearood"]["AUROC"], "Far-OOD_AUROC": rows["farood"]["AUROC"],
                    "ID_Accuracy": rows["nearood"]["ACC"], "Outlier_Data": "No", "Arch": arch,
                    "Additional_Description": f"openood-immuno, {r['protocol']} protocol, FPR@95 OpenOOD "
                                              f"v1.5, run {r['run']}{_bank_note(r)}",
                    "ID_Accuracy_zeroshot": _cell(rows["nearood"], "ACC_zeroshot")})
    return out


def mos_leaderboard_rows(runs: list[dict]) -> list[dict]:
    """Rows of the ``--benchmark mos`` runs (:data:`MOS_LEADERBOARD_COLUMNS`): FPR@95 and AUROC
    per MOS set and their average (the ``farood`` row), as the MCM / NegLabel / ANTS tables."""
    out = []
    for r in runs:
        if r["benchmark"] != "mos":
            continue
        rows = r["rows"]
        row = {"Training": _training(r), "Postprocessor": r["name"]}
        for s in MOS_FOUR:
            row[f"{_MOS_NAMES[s]}_FPR@95"], row[f"{_MOS_NAMES[s]}_AUROC"] = rows[s]["FPR@95"], rows[s]["AUROC"]
        row.update({"Average_FPR@95": rows["farood"]["FPR@95"], "Average_AUROC": rows["farood"]["AUROC"],
                    "ID_Accuracy": rows["farood"]["ACC"], "Arch": _arch(r)[0],
                    "Additional_Description": f"openood-immuno, MOS four, {r['protocol']} protocol, "
                                              f"FPR@95 OpenOOD v1.5, run {r['run']}",
                    "ID_Accuracy_zeroshot": _cell(rows["farood"], "ACC_zeroshot")})
        out.append(row)
    return out


def markdown_report(runs: list[dict], problems: list[str] = ()) -> str:
    lines = ["# openood-immuno results", "",
             "FPR@95 here is OpenOOD v1.5's: share of ID flagged OOD at 95% OOD recall (lower is better).", "",
             "## Our runs", "",
             "ID acc is the accuracy of the postprocessor's own predictions (OpenOOD's ACC with the "
             "net's adapter hook), zero-shot acc frozen CLIP's; F1@tau is the F1 of OOD detection at "
             "the postprocessor's own reject decision and ID rejected@tau the share of ID test images "
             "it rejects (only for those that decide). A postprocessor's name carries its regime "
             "(antibody source, shots x epochs), e.g. `immuno [wordnet, 16-shot x 20]`.", "",
             "| run | postprocessor | protocol | near FPR@95 | near AUROC | far FPR@95 | far AUROC | ID acc | "
             "zero-shot acc | near F1@tau | far F1@tau | ID rejected@tau | other sets (AUROC) | bank sha256 "
             "| note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    core = {"ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"}
    for r in runs:
        if r["benchmark"] != "openood":
            continue
        rows = r["rows"]
        extra = ", ".join(f"{k} {v['AUROC']}" for k, v in rows.items() if k not in core) or "-"
        lines.append(f"| {r['run']} | {r['name']} | {r['protocol']} | {rows['nearood']['FPR@95']} | "
                     f"{rows['nearood']['AUROC']} | {rows['farood']['FPR@95']} | {rows['farood']['AUROC']} | "
                     f"{rows['nearood']['ACC']} | {_cell(rows['nearood'], 'ACC_zeroshot')} | "
                     f"{_cell(rows['nearood'], 'F1@tau')} | {_cell(rows['farood'], 'F1@tau')} | "
                     f"{_cell(rows['nearood'], 'ID_reject@tau')} | {extra} | "
                     f"{_bank_note(r).removeprefix(', bank sha256 ') or '-'} | {_notes(r)} |")
    lines += _mos_table(runs)
    from .immuno_vlm_table import markdown_table   # here: they read score files with plots' loader
    from .published_rows import markdown_sections

    problems = list(problems)
    lines += markdown_table(runs, problems)
    lines += markdown_sections(runs, problems)
    lines += ["", "## Leaderboard rows", "", "| " + " | ".join(LEADERBOARD_COLUMNS) + " |",
              "|" + "---|" * len(LEADERBOARD_COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in LEADERBOARD_COLUMNS) + " |" for row in leaderboard_rows(runs)]
    problems = list(dict.fromkeys(problems))   # a file both plotted and scored is named once
    if problems:
        lines += ["", "## Skipped: files and folders that could not be read", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def _mos_table(runs: list[dict]) -> list[str]:
    """The ``--benchmark mos`` runs' own table (nothing when there are none)."""
    mos = mos_leaderboard_rows(runs)
    if not mos:
        return []
    sets = [_MOS_NAMES[s] for s in MOS_FOUR]
    lines = ["", "## Our runs: MOS four (ImageNet-1K vs iNaturalist, SUN, Places, Textures)", "",
             "The benchmark of the MCM, NegLabel and ANTS papers' main tables (set beside ANTS's "
             "Table 1 below, minding the FPR@95 convention); these runs are in leaderboard_mos.csv, not in "
             "OpenOOD's leaderboard format.", "",
             "| run | postprocessor | protocol | " + " | ".join(f"{s} FPR@95 | {s} AUROC" for s in sets)
             + " | average FPR@95 | average AUROC | ID acc | zero-shot acc |",
             "|" + "---|" * (3 + 2 * len(sets) + 4)]
    for run, row in zip((r for r in runs if r["benchmark"] == "mos"), mos):
        cells = [run["run"], row["Postprocessor"], run["protocol"],
                 *(row[f"{s}_{m}"] for s in sets for m in ("FPR@95", "AUROC")),
                 row["Average_FPR@95"], row["Average_AUROC"], row["ID_Accuracy"], row["ID_Accuracy_zeroshot"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def _csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_report(results_dir: str, out_dir: str | None = None) -> Path:
    """Write ``report.md``, ``leaderboard.csv`` (``leaderboard_mos.csv`` too when there are
    ``--benchmark mos`` runs) and the plots; returns the markdown path."""
    from .plots import plot_run   # here, not above: plots names unreadable files with this module's helpers

    problems: list[str] = []
    runs = find_runs(results_dir, problems)
    out = Path(out_dir or os.path.join(results_dir, "report"))
    out.mkdir(parents=True, exist_ok=True)
    written = set()
    for r in runs:   # a run whose files cannot be plotted is named; the others are plotted
        try:
            written.update(plot_run(r, out, problems))
        except (*_READ_ERRORS, TypeError) as exc:
            _unreadable(problems, r["folder"], exc)
    for stale in out.glob("*.png"):  # plots of runs no longer in results_dir
        if _PLOT_NAME.match(stale.name) and stale not in written:
            stale.unlink()
    atomic_write_text(_csv(LEADERBOARD_COLUMNS, leaderboard_rows(runs)), out / "leaderboard.csv")
    mos = mos_leaderboard_rows(runs)
    if mos:
        atomic_write_text(_csv(MOS_LEADERBOARD_COLUMNS, mos), out / "leaderboard_mos.csv")
    elif (out / "leaderboard_mos.csv").exists():   # of runs no longer in results_dir
        (out / "leaderboard_mos.csv").unlink()
    return atomic_write_text(markdown_report(runs, problems), out / "report.md")
