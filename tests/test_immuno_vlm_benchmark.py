"""Immuno-VLM's benchmark (`--benchmark immuno_vlm`), ImageNet-O's list, the F-score and the
published tables set beside our runs (issue 20, parts 3 and 4)."""
import re
import shutil

import numpy as np
import pytest

from benchmark_fixtures import cut_root

from openood_immuno.cli import main, run as console
from openood_immuno.core.metrics import f1_at_id_tpr, f1_at_threshold, fpr_at_id_tpr, id_tpr_threshold
from openood_immuno.data.benchmarks import IMAGENET_O, get_benchmark
from openood_immuno.data.imagenet_o import write_imagenet_o_list
from openood_immuno.data.published import parse_table, published_tables

pytestmark = pytest.mark.filterwarnings("ignore:.*with RANDOM weights")
TINY = ["--model", "ImmunoTiny-ViT", "--device", "cpu", "--pretrained", "none"]
LISTS = {"test_imagenet.txt": 6, "test_inaturalist.txt": 3, "test_textures.txt": 3}
WNIDS = ("n01443537", "n01530575")


def _imagenet_o_folder(root, minibench, per_class=2):
    """ImageNet-O's release layout (class folders of JPEGs) with minibench photos."""
    photos = sorted((minibench / "images_largescale" / "ninco").rglob("*.*"))
    folder = root / "images_largescale" / "imagenet_o"
    for i, wnid in enumerate(WNIDS):
        (folder / wnid).mkdir(parents=True)
        for j in range(per_class):
            src = photos[i * per_class + j]
            shutil.copy(src, folder / wnid / f"{wnid}_{j}{src.suffix}")
    return folder


@pytest.fixture
def vlm_root(minibench, tmp_path):
    """A data_root with the immuno_vlm lists but ImageNet-O's: 6 ID test images, 3 iNaturalist, 3
    Textures (minibench's), and ImageNet-O's folder (4 photos in 2 class folders), no list yet."""
    root = cut_root(minibench, tmp_path / "data", LISTS)
    _imagenet_o_folder(root, minibench)
    return root


# ---- the benchmark ----------------------------------------------------------------------------
def test_immuno_vlm_benchmark_lists():
    bench = get_benchmark("imagenet", "immuno_vlm")
    assert list(bench.near) == ["imagenet_o"] and list(bench.far) == ["inaturalist", "textures"]
    assert bench.near["imagenet_o"].imglist == "benchmark_imglist/imagenet/test_imagenet_o.txt"
    assert bench.far["textures"] == get_benchmark("imagenet").far["textures"]   # OpenOOD's own lists
    assert bench.id["test"] == get_benchmark("imagenet").id["test"]
    with pytest.raises(ValueError, match="OOD sets of ImageNet-1K, not of 'cifar10': use --id imagenet"):
        get_benchmark("cifar10", "immuno_vlm")


def test_imagenet_o_list_written_from_the_release_layout(vlm_root, capsys):
    assert main(["imagenet-o-list", "--data-root", str(vlm_root)]) == 0
    out = capsys.readouterr().out
    assert "4 images in 2 class folders" in out and "not the paper's ImageNet-O" in out   # not 2000 / 200
    lines = (vlm_root / IMAGENET_O.imglist).read_text().splitlines()
    assert lines == sorted(lines) and len(lines) == 4
    assert all(re.fullmatch(r"imagenet_o/n\d{8}/n\d{8}_\d\.\w+ -1", line) for line in lines)
    rel = lines[0].split()[0]
    assert (vlm_root / IMAGENET_O.data_dir / rel).is_file()
    assert write_imagenet_o_list(str(vlm_root)).images == 4   # rewriting gives the same list


def test_imagenet_o_list_without_the_folder_names_it_and_the_fix(tmp_path, capsys):
    assert console(["imagenet-o-list", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "images_largescale/imagenet_o" in err and "tar -xf imagenet-o.tar" in err


def test_eval_immuno_vlm_without_imagenet_o_list_is_one_line_before_any_model(vlm_root, tmp_path, capsys,
                                                                              monkeypatch):
    import openood_immuno.cli.eval as eval_cli

    monkeypatch.setattr(eval_cli, "net_from_args", lambda *a, **k: pytest.fail("model built"))
    code = console(["eval", "--data-root", str(vlm_root), *TINY, "--benchmark", "immuno_vlm",
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "test_imagenet_o.txt" in err and "openood-immuno imagenet-o-list --data-root" in err


def test_eval_and_report_immuno_vlm(vlm_root, tmp_path, capsys):
    """The benchmark end to end (list written, eval, report): the one test that builds a model and
    extracts features here (about 12 s at load 8 on 2 cores; 12 images)."""
    assert main(["imagenet-o-list", "--data-root", str(vlm_root)]) == 0
    out = tmp_path / "out"
    assert main(["eval", "--data-root", str(vlm_root), *TINY, "--benchmark", "immuno_vlm", "--postprocessors",
                 "mcm", "--engine", "builtin", "--num-workers", "0", "--output-dir", str(out)]) == 0
    (folder,) = [p for p in out.glob("*/mcm-*") if (p / "run.json").is_file()]
    header, *rows = (folder / "ood.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["imagenet_o", "nearood", "inaturalist", "textures", "farood"]
    assert '"benchmark": "immuno_vlm"' in (folder / "run.json").read_text()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    said = capsys.readouterr().out
    assert "0 OpenOOD-benchmark run(s)" in said and "--benchmark immuno_vlm runs: their table is in report.md" in said
    md = (out / "report" / "report.md").read_text()
    section = md.split("## Our runs: Immuno-VLM's benchmark")[1].split("\n## ")[0]
    run_row = next(line for line in section.splitlines() if line.startswith(f"| imagenet_ImmunoTiny-ViT_none/{folder.name}"))
    cells = [c.strip() for c in run_row.strip("|").split("|")]
    assert len(cells) == 3 + 9 + 4 and cells[-1] == "-"   # mcm does not decide: no F1@tau
    assert 0 <= float(cells[-2]) <= 100                   # avg F1@TPR95 from the saved scores
    beside = md.split("### Immuno-VLM, Table 1")[1].split("\n### ")[0]
    assert "| run here, NOT COMPARABLE: random weights; backbone ImmunoTiny-ViT (none)" in beside
    assert "| quoted (Immuno-VLM, Table 1) | Immuno-VLM (Ours) | CLIP ViT-B/16" in beside
    assert "| quoted (Immuno-VLM, Table 1) | Immuno-VLM (Ours) with ViT-L/14 | CLIP ViT-L/14" in beside
    assert "(F1@TPR95)" in beside and "(OpenOOD)" in beside   # our F-score rule; FPR direction unstated
    assert "No run of `--benchmark mos` here: quoted rows only." in md


# ---- the F-score -----------------------------------------------------------------------------
def test_id_tpr_threshold_by_hand():
    conf = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 1.0,
                     0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.15, 0.05])
    # n = 20, k = floor(0.05 * 20) = 1: tau is the 2nd smallest (0.1), only 0.05 is rejected
    assert id_tpr_threshold(conf, 0.95) == 0.1
    assert id_tpr_threshold(conf, 0.80) == 0.25          # k = 4: 0.05, 0.1, 0.15, 0.2 rejected
    assert id_tpr_threshold(np.array([3.0]), 0.95) == 3.0  # k = 0: nothing rejected
    with pytest.raises(ValueError):
        id_tpr_threshold(np.array([]))


def test_f1_and_fpr_at_id_tpr_by_hand():
    # 10 ID scores 1..10 (k = floor(0.5) = 0 at 95%: tau = 1, no ID rejected), 4 OOD: 0, 0.5, 2, 20
    conf = np.r_[np.arange(1, 11, dtype=float), [0.0, 0.5, 2.0, 20.0]]
    label = np.r_[np.zeros(10, int), -np.ones(4, int)]
    # rejected (conf < 1): the OOD 0 and 0.5 -> TP 2, FP 0, FN 2: F1 = 4 / (4 + 0 + 2)
    assert f1_at_id_tpr(conf, label) == pytest.approx(4 / 6)
    assert fpr_at_id_tpr(conf, label) == pytest.approx(2 / 4)       # OOD 2 and 20 accepted
    # at 80% ID TPR: k = 2, tau = 3; rejected: ID 1, 2 and OOD 0, 0.5, 2 -> TP 3, FP 2, FN 1
    assert f1_at_id_tpr(conf, label, 0.80) == pytest.approx(6 / 9)
    assert f1_at_id_tpr(conf, label, 0.80) == f1_at_threshold(conf, label, 3.0)
    with pytest.raises(ValueError, match="both ID"):
        f1_at_id_tpr(conf[:10], label[:10])


# ---- the published tables --------------------------------------------------------------------
def test_published_tables_name_paper_table_backbone_and_direction():
    tables = {t.file: t for t in published_tables()}
    assert set(tables) == {"ants_table1_mos.yml", "ants_table2_openood.yml", "immuno_vlm_table1.yml"}
    for t in tables.values():
        assert t.paper["title"] and t.table.startswith("Table ") and t.backbone == "CLIP ViT-B/16"
        assert t.open_clip == {"model": "ViT-B-16", "pretrained": "openai"}
        assert t.fpr95_direction_basis and all(len(r.values) == len(t.columns) for r in t.rows)
    assert {t.benchmark for t in tables.values()} == {"mos", "openood", "immuno_vlm"}
    ants = tables["ants_table2_openood.yml"]
    assert ants.source == "ANTS, Table 2" and ants.fpr95_direction == "id_at_95_ood_tpr"
    assert next(r for r in ants.rows if r.method == "ANTS").values["nearood_auroc"] == 82.15
    vlm = tables["immuno_vlm_table1.yml"]
    assert vlm.fpr95_direction == "unstated" and vlm.paper["arxiv"] is None
    assert next(r for r in vlm.rows if r.method == "MCM").values["imagenet_o_auroc"] == 74.5


def test_published_numbers_are_in_the_paper_texts(minibench):
    """Every quoted row is a method's line of the paper's table in the text we hold: its numbers in
    the table's column order, with nothing between them."""
    papers = minibench.parents[1] / "papers"
    texts = {"ANTS": "002_4108c4500322952a.txt", "Immuno-VLM": "000_e83a88f65dc889e3.txt"}
    if not all((papers / f).is_file() for f in texts.values()):
        pytest.skip(f"paper texts not in {papers}")
    for t in published_tables():
        lines = (papers / texts[t.paper["short"]]).read_text(encoding="utf-8").splitlines()
        for row in t.rows:
            want = [t.cell(v) for v in row.values.values()]
            n = len(want)
            found = [line for line in lines if any(re.findall(r"\d+\.\d+", line)[i:i + n] == want for i in range(40))
                     and (row.method.split()[0] in line or "with ViT-L/14" in line)]
            assert found, f"{t.file}: {row.method} {want} not on one line of the paper text"


def test_a_malformed_published_table_is_named():
    good = {"paper": {"short": "X", "title": "T", "venue": None, "arxiv": None}, "table": "Table 1",
            "benchmark": "openood", "id": "imagenet", "backbone": "CLIP ViT-B/16",
            "open_clip": {"model": "ViT-B-16", "pretrained": "openai"}, "fpr95_direction": "unstated",
            "fpr95_direction_basis": "-", "columns": ["nearood_auroc"], "rows": [{"method": "M", "values": [1.0]}]}
    assert parse_table(good, "x.yml").rows[0].values == {"nearood_auroc": 1.0}
    with pytest.raises(ValueError, match="x.yml: row 1 \\(M\\) has 2 values for 1 columns"):
        parse_table({**good, "rows": [{"method": "M", "values": [1.0, 2.0]}]}, "x.yml")
    with pytest.raises(ValueError, match="fpr95_direction 'up'"):
        parse_table({**good, "fpr95_direction": "up"}, "x.yml")


def test_report_sets_a_run_here_beside_quoted_rows(tmp_path):
    """A ViT-B-16 / openai run of the OpenOOD benchmark: comparable, beside ANTS's Table 2."""
    from test_report import _result, _write

    from openood_immuno.experiments.report import write_report

    run = _write(tmp_path / "res", _result("mcm"))
    md = write_report(str(tmp_path / "res"), str(tmp_path / "out")).read_text()
    beside = md.split("### ANTS, Table 2")[1].split("\n### ")[0]
    assert "share of ID flagged OOD at 95% OOD recall (OpenOOD v1.5)" in beside
    assert f"| run here | mcm | ViT-B-16 (openai), openood protocol, imagenet_ViT-B-16_openai/{run.name} | " \
           "50.00 | 50.00 | 62.00 | 66.00 |" in beside
    assert "| quoted (ANTS, Table 2) | MCM | CLIP ViT-B/16, zero-shot | 79.02 | 68.54 | 60.11 | 84.77 |" in beside
    vlm = md.split("### Immuno-VLM, Table 1")[1]
    assert "No run of `--benchmark immuno_vlm` here: quoted rows only." in vlm
    assert "| quoted (Immuno-VLM, Table 1) | MCM | CLIP ViT-B/16, zero-shot | 78.2 | 74.5 | 46.2 |" in vlm


def test_report_gives_a_mos_run_ants_table1_direction_from_its_scores(tmp_path):
    """ANTS's Table 1 counts FPR95 as OOD accepted at 95% ID TPR: our cells are computed so from
    the run's saved scores (hand-made here), not copied from OpenOOD's FPR@95 in ood.csv."""
    from openood_immuno.experiments.report import write_report
    from openood_immuno.experiments.results import RunSpec, write_run
    from openood_immuno.experiments.runner import EvalResult

    sets = {"inaturalist": [0.0, 5.0], "sun": [0.0, 0.0], "places": [3.0, 4.0], "textures": [1.0, 30.0]}
    rows = {s: [99.0, 60.0, 70.0, 40.0, 1.0] for s in [*sets, "farood"]}
    scores = {"id": (np.zeros(20, int), np.arange(1, 21, dtype=float), np.zeros(20, int))}
    scores.update({s: (np.zeros(2, int), np.array(c), -np.ones(2, int)) for s, c in sets.items()})
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "ViT-B-16|tag:openai", "/data", {}, "mcm", {}, "openood")
    write_run(str(tmp_path / "res"), spec, EvalResult("mcm", rows, scores=scores), extra={"benchmark": "mos"})
    md = write_report(str(tmp_path / "res"), str(tmp_path / "out")).read_text()
    beside = md.split("### ANTS, Table 1")[1].split("\n### ")[0]
    # ID 1..20: tau = 2 (k = 1); OOD accepted (conf >= 2): 1/2, 0/2, 2/2, 1/2; their mean 50
    run_row = next(line for line in beside.splitlines() if line.startswith("| run here | mcm |"))
    cells = [c.strip() for c in run_row.strip("|").split("|")][3:]
    assert cells == ["60.00", "50.00", "60.00", "0.00", "60.00", "100.00", "60.00", "50.00", "60.00", "50.00"]
    assert "share of OOD accepted at 95% ID TPR" in beside


@pytest.mark.parametrize("model, pretrained, state, label, why", [
    ("ViT-B-16", "openai", "ok", "ok", ""),
    ("ViT-B-16", "openai", "stand-in", "NO MLLM: NegLabel scores", "status NO MLLM: NegLabel scores"),
    ("ViT-L-14", "openai", "ok", "ok", "backbone ViT-L-14 (openai), not CLIP ViT-B/16"),
    ("ViT-B-16", "none", "random-weights", "RANDOM WEIGHTS: pretrained none", "random weights; backbone ViT-B-16 (none)"),
])
def test_comparability_rule(model, pretrained, state, label, why):
    from openood_immuno.experiments.published_rows import comparability

    run = {"status": label, "meta": {"model": model, "pretrained": pretrained, "status": {"state": state}}}
    table = next(t for t in published_tables() if t.benchmark == "openood")
    got = comparability(run, table)
    assert got.startswith(why) if why else got == ""
