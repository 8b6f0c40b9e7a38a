import csv

import numpy as np

from openood_immuno.cli import main
from openood_immuno.report import LEADERBOARD_COLUMNS, published_results, write_report
from openood_immuno.runner import EvalResult

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


def test_report_markdown_leaderboard_and_plots(tmp_path, capsys):
    run = tmp_path / "res" / "imagenet_ViT-B-16_openai"
    _result("mcm").write_csv(str(run / "mcm"))
    _result("immuno").write_csv(str(run / "immuno"))
    _result("ants", stream=True).write_csv(str(run / "ants_stream"))
    md = write_report(str(tmp_path / "res"), str(tmp_path / "out")).read_text()
    assert "| imagenet_ViT-B-16_openai | mcm | openood | 50.00 | 62.00 | 50.00 | 66.00 | 1.00 |" in md
    assert "| imagenet_ViT-B-16_openai | ants | stream |" in md
    assert "share of ID flagged OOD at 95% OOD recall" in md
    assert all(row["method"] in md for row in published_results()["rows"])
    with open(tmp_path / "out" / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LEADERBOARD_COLUMNS
    assert {r["Arch"] for r in rows} == {"ViT-B-16"}
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["ants_stream_roc_hist.png", "immuno_openood_evt_thresholds.png",
                    "immuno_openood_roc_hist.png", "mcm_openood_roc_hist.png"]
    assert main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "cli")]) == 0
    assert "report:" in capsys.readouterr().out


def test_report_on_empty_folder_names_the_fix(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="--output-dir"):
        write_report(str(tmp_path))
