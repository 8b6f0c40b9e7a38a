import csv
import os

import pytest

from openood_immuno import build_postprocessor
from openood_immuno.cli import main
from openood_immuno.data.benchmarks import BenchmarkLists, parse_extra_ood
from openood_immuno.experiments.runner import FeatureStore, evaluate

ROWS = ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]


def test_cli_eval_prints_table_and_caches_features(minibench, tmp_path, capsys, caplog):
    argv = ["eval", "--data-root", str(minibench), "--model", "ImmunoTiny-ViT", "--pretrained", "none",
            "--postprocessors", "mcm", "--engine", "builtin", "--output-dir", str(tmp_path),
            "--num-workers", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for row in ROWS:
        assert any(line.startswith(row) for line in out.splitlines()), row
    (run,) = (tmp_path / "imagenet_ImmunoTiny-ViT_none").glob("mcm-*")
    with open(run / "ood.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["dataset"] for r in rows] == ROWS
    assert set(rows[0]) == {"dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC", "ACC_zeroshot",
                            "label", "status"}
    assert {r["label"] for r in rows} == {"mcm"}  # nothing to name beyond the name
    assert {r["status"] for r in rows} == {"RANDOM WEIGHTS: pretrained none"}   # --pretrained none
    assert (run / "run.json").is_file()
    caplog.clear()
    with caplog.at_level("INFO", logger="openood_immuno"):
        assert main(argv) == 0
    cached = [r.message for r in caplog.records if "from cache" in r.message]
    assert len(cached) == 6, cached  # ID test + 5 OOD sets: no backbone pass the second time
    assert "features test_imagenet" not in capsys.readouterr().err  # no progress bar either


def test_stream_protocol_equals_openood_protocol_for_stateless_scorer(tiny_net, minibench):
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    a = evaluate(build_postprocessor("mcm"), store, "openood")
    b = evaluate(build_postprocessor("mcm"), store, "stream", seeds=[0, 1])
    for row in ROWS:
        assert a.rows[row] == pytest.approx(b.rows[row], abs=1e-6)
        assert b.std[row] == pytest.approx([0] * 6, abs=1e-6)


def test_aps_searches_sweep_on_validation(tiny_net, minibench):
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    pp = build_postprocessor("mcm", APS_mode=True)
    result = evaluate(pp, store)
    assert pp.hyperparam_search_done and result.hyperparams["T"] in pp.args_dict["T"]


def test_extra_ood_lists(tiny_net, minibench):
    extra = parse_extra_ood(["imagenet_o=benchmark_imglist/imagenet/test_ninco.txt"])
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(extra=extra), num_workers=0,
                         progress=False)
    result = evaluate(build_postprocessor("mcm"), store)
    assert result.rows["imagenet_o"] == pytest.approx(result.rows["ninco"])
    with pytest.raises(ValueError, match="NAME=LIST"):
        parse_extra_ood(["nolist"])
    assert os.path.basename(extra["imagenet_o"].imglist) == "test_ninco.txt"
