import csv
import errno
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest

from openood_immuno.cli import main
from openood_immuno.data.published import published_tables
from openood_immuno.experiments.report import LEADERBOARD_COLUMNS, write_report
from openood_immuno.experiments.results import RunSpec, write_run
from openood_immuno.experiments.runner import EvalResult

ROWS = ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]


def _result(name, stream=False):
    rng = np.random.default_rng(0)
    rows = {r: [50.0, 60.0 + i, 70.0, 40.0, 1.0] for i, r in enumerate(ROWS)}
    scores = {}
    if not stream:
        scores["id"] = (np.zeros(20, int), rng.random(20) + 0.5, np.zeros(20, int))
    for s in ("ssb_hard", "textures"):
        label = np.r_[np.zeros(20, int), -np.ones(10, int)] if stream else -np.ones(10, int)
        scores[s] = (np.zeros(len(label), int), rng.random(len(label)), label)
    art = {"evt_threshold": np.linspace(0, 1, 5), "evt_pooled": np.array([1, 0, 1, 0, 1], bool)}
    return EvalResult(name, rows, None, None, {}, art if name == "immuno" else {}, scores)


def _write(res, result, protocol="openood", pretrained="openai", **pp_args):
    spec = RunSpec("imagenet", "ViT-B-16", pretrained, f"ViT-B-16|tag:{pretrained}", "/data",
                   {"id_test": {"sha256": "0"}}, result.postprocessor, pp_args, protocol)
    return write_run(str(res), spec, result)


def test_report_markdown_leaderboard_and_plots(tmp_path, capsys):
    res = tmp_path / "res"
    mcm = _write(res, _result("mcm"))
    immuno = _write(res, _result("immuno"))
    ants = _write(res, _result("ants", stream=True), "stream")
    md = write_report(str(tmp_path / "res"), str(tmp_path / "out")).read_text()
    assert (f"| imagenet_ViT-B-16_openai/{mcm.name} | mcm | openood | 50.00 | 62.00 | 50.00 | 66.00 | "
            "1.00 |") in md
    assert f"| imagenet_ViT-B-16_openai/{ants.name} | ants | stream |" in md
    assert "share of ID flagged OOD at 95% OOD recall" in md
    assert all(f"| quoted ({t.source}) | {row.method} |" in md for t in published_tables() for row in t.rows)
    with open(tmp_path / "out" / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LEADERBOARD_COLUMNS
    assert {r["Arch"] for r in rows} == {"ViT-B-16"}
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == sorted([f"{ants.name}_roc_hist.png", f"{immuno.name}_evt_thresholds.png",
                           f"{immuno.name}_roc_hist.png", f"{mcm.name}_roc_hist.png"])
    assert ants.name.startswith("ants_stream-") and mcm.name.startswith("mcm-")
    assert main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "cli")]) == 0
    assert "report:" in capsys.readouterr().out


def test_report_on_empty_folder_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="--output-dir"):
        write_report(str(tmp_path))


def test_report_reads_only_complete_runs_and_names_unreadable_files(tmp_path, caplog):
    res = tmp_path / "res"
    good = _write(res, _result("mcm"))
    broken = _write(res, _result("immuno"))
    (broken / "scores_textures.npz").write_bytes(b"PK\x03\x04 not a zip")  # listed in run.json
    (good / "scores_ninco.npz").write_bytes(b"stray")  # not in run.json: never opened
    interrupted = good.parent / ".tmp-neglabel-abc123"
    shutil.copytree(good, interrupted)
    (interrupted / "run.json").unlink()
    legacy = good.parent / "ants"  # an older layout, or a run killed before run.json
    shutil.copytree(good, legacy)
    (legacy / "run.json").unlink()
    badjson = _write(res, _result("neglabel"))
    (badjson / "run.json").write_text("{")
    with caplog.at_level(logging.WARNING, logger="openood_immuno.experiments.report"):
        md = write_report(str(res), str(tmp_path / "out")).read_text()
    assert f"/{good.name} | mcm |" in md and f"/{broken.name} | immuno |" in md
    assert "| neglabel" not in md and "| ants" not in md
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"cannot read {broken / 'scores_textures.npz'}: BadZipFile" in m for m in lines), lines
    assert any(f"cannot read {badjson / 'run.json'}: JSONDecodeError" in m for m in lines), lines
    assert any("1 folder(s) without run.json skipped" in m for m in lines), lines
    assert not any("scores_ninco" in m for m in lines)
    assert "## Skipped: files and folders that could not be read" in md and "scores_textures.npz" in md
    # rerun the report after a run is gone: its plots are removed, never shown beside other runs
    shutil.rmtree(broken)
    write_report(str(res), str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"{good.name}_roc_hist.png"]


def test_report_marks_a_run_whose_ood_csv_says_degraded(tmp_path):
    res = tmp_path / "res"
    result = _result("ants")
    result.status = {"requests": 104, "requests_failed": 104}
    run = _write(res, result)
    meta = json.loads((run / "run.json").read_text())
    meta["status"] = {"label": "ok"}  # run.json and ood.csv disagree: the worse one is shown
    (run / "run.json").write_text(json.dumps(meta))
    md = write_report(str(res), str(tmp_path / "out")).read_text()
    assert "| ants [DEGRADED: 104 of 104 requests failed] | openood |" in md


def test_report_without_complete_runs_names_the_fix(tmp_path):
    run = _write(tmp_path / "res", _result("mcm"))
    (run / "run.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no complete run .*\(1 incomplete folder\(s\)"):
        write_report(str(tmp_path / "res"))


# ---- report reads only what was written (issue 18 C) -----------------------------------------
def _rewrite_csv(run, edit):
    lines = (run / "ood.csv").read_text().splitlines()
    edit(lines)
    (run / "ood.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit, line, why", [
    (lambda ls: ls.__setitem__(3, ",".join(ls[3].split(",")[:1] + ls[3].split(",")[2:])), 4,
     r"line 4: \d+ cells for the \d+ columns of the header \(one missing\)"),
    (lambda ls: ls.__setitem__(3, ls[3] + ",extra"), 4, r"line 4: \d+ cells for the \d+ columns .*\(one too many\)"),
    (lambda ls: ls.__setitem__(2, ls[2].replace("50.00", "ok", 1)), 3, r"line 3: column FPR@95 holds 'ok'"),
    (lambda ls: ls.__setitem__(0, ls[0].replace("AUPR_IN,AUPR_OUT", "AUPR_OUT,AUPR_IN")), 1,
     r"line 1: metric columns \[.*\] differ from those run.json lists"),
    (lambda ls: ls.append(ls[3]), 9, r"line 9: dataset 'nearood' appears twice"),
], ids=["cell_missing", "cell_too_many", "not_a_number", "columns_reordered", "row_twice"])
def test_a_malformed_ood_csv_row_skips_its_run_naming_file_and_line(tmp_path, caplog, edit, line, why):
    """Before: a row with a cell too few shifted AUPR_IN under AUROC in report.md."""
    res = tmp_path / "res"
    good = _write(res, _result("mcm"))
    bad = _write(res, _result("neglabel"))
    _rewrite_csv(bad, edit)
    with caplog.at_level(logging.WARNING, logger="openood_immuno.experiments.report"):
        md = write_report(str(res), str(tmp_path / "out")).read_text()
    assert f"/{good.name} | mcm |" in md and "| neglabel |" not in md
    assert not any(r["Postprocessor"] == "neglabel" for r in
                   csv.DictReader(open(tmp_path / "out" / "leaderboard.csv")))
    (msg,) = [r.getMessage() for r in caplog.records if "neglabel" in r.getMessage()]
    assert msg.startswith(f"report: cannot read {bad / 'ood.csv'}: MalformedTable: ")
    assert re.search(why, msg) and f": line {line}: " in msg, msg
    assert f"{bad / 'ood.csv'}" in md                               # listed under Skipped too


def _deny(monkeypatch, *folders):
    """Make ``folders`` unreadable: chmod 000, and, for root (whom permissions do not stop), the
    PermissionError the kernel would give a user."""
    for f in folders:
        os.chmod(f, 0)
    if os.geteuid() != 0:
        return
    denied = [str(f) for f in folders]

    def guard(name, fn):
        def wrapped(path, *a, **kw):
            p = os.fsdecode(path) if not isinstance(path, int) else ""
            if any(p == d or p.startswith(d + os.sep) for d in denied):
                raise PermissionError(errno.EACCES, "Permission denied", p)
            return fn(path, *a, **kw)
        monkeypatch.setattr(os, name, wrapped)

    guard("scandir", os.scandir)
    guard("stat", os.stat)


def test_unreadable_run_and_parent_folders_are_named_and_the_rest_reported(tmp_path, caplog, monkeypatch):
    """Before: one unreadable run folder aborted the whole report; an unreadable parent folder
    was skipped without a word."""
    res = tmp_path / "res"
    good = _write(res, _result("mcm"))
    locked_run = _write(res, _result("neglabel"))
    locked_parent = _write(res, _result("immuno"), pretrained="other").parent
    _deny(monkeypatch, locked_run, locked_parent)
    try:
        with caplog.at_level(logging.WARNING, logger="openood_immuno.experiments.report"):
            md = write_report(str(res), str(tmp_path / "out")).read_text()
    finally:
        monkeypatch.undo()
        os.chmod(locked_run, 0o755)
        os.chmod(locked_parent, 0o755)
    assert f"/{good.name} | mcm |" in md and "| neglabel |" not in md and "| immuno |" not in md
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"cannot read {locked_run}: PermissionError" in m for m in lines), lines
    assert any(f"cannot read {locked_parent}: PermissionError" in m for m in lines), lines
    assert f"- cannot read {locked_parent}: PermissionError" in md


def test_nan_in_a_scores_file_names_the_file_and_the_rest_goes_on(tmp_path, caplog):
    """Before: scikit-learn's bare "Input contains NaN." and no report at all."""
    res = tmp_path / "res"
    good = _write(res, _result("mcm"))
    result = _result("neglabel")
    pred, conf, label = result.scores["textures"]
    conf[[1, 4]] = np.nan
    bad = _write(res, result)
    with caplog.at_level(logging.WARNING, logger="openood_immuno.experiments.report"):
        md = write_report(str(res), str(tmp_path / "out")).read_text()
    assert f"/{good.name} | mcm |" in md and f"/{bad.name} | neglabel |" in md   # its table is fine
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"cannot read {bad / 'scores_textures.npz'}: ValueError: 2 of 10 scores are NaN or inf"
               in m for m in lines), lines
    assert not any("Input contains NaN" in m for m in lines)
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {f"{good.name}_roc_hist.png",
                                                                  f"{bad.name}_roc_hist.png"}
