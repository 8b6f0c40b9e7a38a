"""``openood-immuno antibodies`` / ``vaccinate`` and Immuno-VLM end to end on minibench."""
import json
import time

import numpy as np
import pytest

from openood_immuno import build_postprocessor
from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.data.lists import ImglistDataset, make_loader
from openood_immuno.methods.immuno.antibodies import AntibodyBank
from openood_immuno.cli import main as run
from openood_immuno.cli.args import UsageError
from openood_immuno.core.metrics import compute_all_metrics

IMAGENET_ID = BENCHMARKS["imagenet"].id

TINY = ["--model", "ImmunoTiny-ViT", "--pretrained", "none", "--device", "cpu"]


def test_antibodies_cli_builds_the_full_imagenet_bank_offline_and_resumes(tmp_path, capsys):
    out = tmp_path / "imagenet_wordnet.json"
    start = time.perf_counter()
    assert run(["antibodies", "--id", "imagenet", "--generator", "wordnet", "--out", str(out),
                "--no-progress", *TINY]) == 0
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out
    print(f"1000-class WordNet bank + filter summary: {elapsed:.1f} s\n{printed}")
    bank = AntibodyBank.load(out)
    assert len(bank.class_names) == 1000 and not bank.missing()
    bank.require_complete(bank.class_names)
    assert "classes: 1000 (998 distinct names)" in printed and "band-pass [0.55, 0.92]" in printed
    summary = json.loads((tmp_path / "imagenet_wordnet.summary.json").read_text())
    rows = summary["per_class"]
    assert len(rows) == 998 and {"class", "near_ood", "contextual", "before", "after"} <= set(rows[0])
    assert all(0 <= r["after"] <= r["before"] == r["near_ood"] + r["contextual"] for r in rows)
    assert summary["filter"]["total"] == len(bank) and summary["short"] == sorted(bank.short)
    assert elapsed < 120

    created, digest = bank.provenance["created"], bank.digest()
    assert run(["antibodies", "--id", "imagenet", "--out", str(out), "--no-progress",
                "--no-filter-summary", *TINY]) == 0
    again = AntibodyBank.load(out)
    assert again.provenance["created"] == created and again.digest() == digest
    with pytest.raises(Exception, match="other generator settings"):
        run(["antibodies", "--out", str(out), "--n-near", "3", "--no-filter-summary", *TINY])


def test_antibodies_cli_for_a_class_list_file(tmp_path, capsys):
    names = tmp_path / "classes.txt"
    names.write_text("tench\ngoldfish\nzebra\n")
    out = tmp_path / "bank.json"
    assert run(["antibodies", "--id", str(names), "--out", str(out), "--n-near", "4",
                "--n-contextual", "2", "--no-progress", *TINY]) == 0
    bank = AntibodyBank.load(out)
    assert bank.class_names == ["tench", "goldfish", "zebra"]
    assert sum(a.kind == "near_ood" for a in bank.antibodies_for("zebra")) == 4
    assert "goldfish" not in {a.text for a in bank.antibodies_for("tench")}


def minibench_loaders(net, root):
    return {split: make_loader(ImglistDataset(str(root), IMAGENET_ID[split], net.preprocess, 1000), 64, 0)
            for split in ("train", "val", "test")}


def test_vaccinate_cli_then_setup_reuses_the_adapter(tiny_net, minibench, capsys):
    assert run(["vaccinate", "--data-root", str(minibench), "--num-workers", "0", "--pp-arg", "immuno.epochs=3",
                *TINY]) == 0
    printed = capsys.readouterr().out
    assert "trained" in printed and "push" in printed
    trained = json.loads(printed.strip().splitlines()[-1])

    # OpenOOD's path: setup(net, id_loader_dict, ood_loader_dict) with lazy features
    loaders = minibench_loaders(tiny_net, minibench)
    pp = build_postprocessor("immuno", epochs=3)
    start = time.perf_counter()
    pp.setup(tiny_net, loaders, {})
    assert pp.scorer.vaccination["cached"] and pp.scorer.vaccination["path"] == trained["path"]
    print(f"setup() with cached adapter and features: {time.perf_counter() - start:.1f} s")
    pred, conf, label = pp.inference(tiny_net, loaders["test"], progress=False)
    assert pred.shape == conf.shape == label.shape == (600,) and np.isfinite(conf).all()
    ood = ImglistDataset(str(minibench), IMAGENET_ID["val"].__class__(
        "ninco", "images_largescale/", "benchmark_imglist/imagenet/test_ninco.txt"), tiny_net.preprocess)
    _, ood_conf, _ = pp.inference(tiny_net, make_loader(ood, 64, 0), progress=False)
    metrics = compute_all_metrics(np.concatenate([conf, ood_conf]),
                                  np.concatenate([label, -np.ones(len(ood_conf), int)]),
                                  np.concatenate([pred, np.zeros(len(ood_conf), int)]))
    assert all(np.isfinite(metrics))


def test_zeroshot_and_dis_fit_through_setup(tiny_net, minibench):
    loaders = minibench_loaders(tiny_net, minibench)
    for name, args in (("immuno_zeroshot", {}), ("immuno_dis", {"epochs": 2})):
        pp = build_postprocessor(name, **args)
        pp.setup(tiny_net, loaders, {})
        pred, conf = pp.score_features(tiny_net.class_text_features[:4])
        assert pred.shape == (4,) and conf.dtype.is_floating_point
    assert pp.scorer.adapter is not None and pp.scorer.evt is None


def test_vaccinate_cli_rejects_a_config_without_adapter(minibench):
    with pytest.raises(UsageError, match="--config immuno_zeroshot has no rejection adapter"):
        run(["vaccinate", "--data-root", str(minibench), "--config", "immuno_zeroshot", *TINY])


def test_openood_evaluator_by_name_trains_in_setup_then_loads_from_cache(tiny_net, minibench, tmp_path):
    pytest.importorskip("openood.evaluation_api")
    import openood_immuno
    from openood.evaluation_api import Evaluator
    from openood_immuno.openood.bridge import prefill_id_predictions

    openood_immuno.register()
    frames, infos = [], []
    for i in range(2):
        evaluator = Evaluator(tiny_net, id_name="imagenet", data_root=str(minibench),
                              config_root=str(tmp_path / f"configs{i}"), preprocessor=tiny_net.preprocess,
                              postprocessor_name="immuno", batch_size=64, num_workers=0)
        prefill_id_predictions(evaluator)
        frames.append(evaluator.eval_ood(progress=False))
        infos.append(evaluator.postprocessor.scorer.vaccination)
    assert [info["cached"] for info in infos] == [False, True]
    assert frames[0].equals(frames[1]) and "nearood" in frames[0].index
