"""OpenOOD's ``main.py`` route against a real OpenOOD v1.5 (skipped where OpenOOD is absent, as in CI).

``network.name: clip`` through ``get_network``, ``preprocessor.name: clip`` through
``get_preprocessor``, and the launcher ``python -m openood_immuno.openood.main`` on the minibench
(CPU, random ImmunoTiny-ViT), whose scores must equal our builtin runner's. The launcher runs in
a subprocess, as users run it (OpenOOD's logger replaces ``sys.stdout``); it shares this
session's feature cache, so the runner's features are read back, not recomputed.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmark_fixtures import imagenet200_root  # noqa: F401  (fixture)

openood = pytest.importorskip("openood.evaluation_api")

import openood_immuno  # noqa: E402
from openood_immuno import build_postprocessor  # noqa: E402
from openood_immuno.data.classnames import id_class_names  # noqa: E402
from openood_immuno.core.metrics import compute_all_metrics  # noqa: E402
from openood_immuno.cli import main as cli_main  # noqa: E402
from openood_immuno.openood.configs import network_yml  # noqa: E402
from openood_immuno.openood.main import build_config, prepare, with_network_defaults  # noqa: E402
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate  # noqa: E402

TINY = ["--network.model", "ImmunoTiny-ViT", "--network.pretrained", "none", "--network.device", "cpu"]
IMAGENET_ROWS = ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]


def _config(id_name="imagenet200", num_classes=200, preprocessor="clip"):
    from openood.utils.config import Config, merge_configs

    config = merge_configs(Config(str(network_yml())), Config({
        "dataset": {"name": id_name, "num_classes": num_classes}, "preprocessor": {"name": preprocessor}}))
    with_network_defaults(config)  # clip.yml states only the wiring; the launcher adds the rest
    config.parse_args(["--network.model", "ImmunoTiny-ViT", "--network.pretrained", "none"])
    config.parse_refs()
    return config


def test_get_network_builds_clip_with_the_dataset_class_names():
    import openood.networks
    import openood.networks.utils as net_utils
    from openood.pipelines import test_ad_pipeline, test_ood_pipeline

    openood_immuno.register()
    bound = net_utils.get_network
    openood_immuno.register()
    assert net_utils.get_network is bound is openood.networks.get_network
    assert test_ood_pipeline.get_network is bound and test_ad_pipeline.get_network is bound
    net = test_ood_pipeline.get_network(_config().network)
    assert isinstance(net, openood_immuno.CLIPNet)
    assert net.class_names == id_class_names("imagenet200") and net.device.type == "cpu"
    assert net is test_ood_pipeline.get_network(_config().network)  # one net per config
    from openood.utils.config import Config

    resnet = bound(Config({"name": "resnet18_32x32", "num_classes": 10, "pretrained": False, "num_gpus": 0}))
    assert type(resnet).__name__ == "ResNet18_32x32"  # other names: OpenOOD's own table
    with pytest.raises(ValueError, match="has 200 classes but dataset.num_classes is 10"):
        bound(_config(num_classes=10).network)


def test_get_preprocessor_gives_clip_transform():
    import openood.datasets.utils as ds_utils
    from openood.preprocessors import TestStandardPreProcessor

    openood_immuno.register()
    config = _config()
    pre = ds_utils.get_preprocessor(config, "test")
    assert isinstance(pre, openood_immuno.openood.network.CLIPPreprocessor)
    assert repr(pre) == repr(openood_immuno.openood.network.clip_net_from_config(config.network).preprocess)
    assert repr(ds_utils.get_preprocessor(config, "train")) == repr(pre)  # frozen backbone: no augmentation
    base = _config(preprocessor="base")
    base.dataset.update({"pre_size": 256, "image_size": 224, "interpolation": "bilinear",
                         "normalization_type": "imagenet"})
    assert isinstance(ds_utils.get_preprocessor(base, "test"), TestStandardPreProcessor)
    base.preprocessor.name = "clip"
    base.network.name = "resnet50"
    with pytest.raises(ValueError, match="set network.name: clip"):
        ds_utils.get_preprocessor(base, "test")


def test_launcher_checks_lists_and_stale_results_before_loading(minibench, tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.train.imglist_pth .* set --data_root"):
        prepare(["imagenet_clip_mcm.yml"], ["--data_root", str(tmp_path)])
    args = ["--data_root", str(minibench), "--output_dir", str(tmp_path)]
    config = build_config(["imagenet_clip_mcm.yml"], args)
    Path(config.output_dir).mkdir(parents=True)
    (Path(config.output_dir) / "ood.csv").write_text("dataset\n")
    with pytest.raises(FileExistsError, match="would append"):
        prepare(["imagenet_clip_mcm.yml"], args)
    with pytest.raises(KeyError, match="--network.modle names no key"):
        build_config(["imagenet_clip_mcm.yml"], ["--network.modle", "x"])


def _plain(config) -> dict:
    return {k: _plain(v) if isinstance(v, dict) else v for k, v in config.items()}


def test_a_bare_name_is_the_file_openood_config_writes(tmp_path, monkeypatch):
    """The launcher's run-time config equals the file for OpenOOD's own main.py, overrides included."""
    out = tmp_path / "cifar10_clip_ants_ens.yml"
    assert cli_main(["openood-config", "ants_ens", "--id", "cifar10", "--out", str(out)]) == 0
    overrides = ["--network.model", "RN50", "--postprocessor.postprocessor_args.ens_bank_size", "7"]
    built = build_config(["cifar10_clip_ants_ens.yml"], overrides)
    assert _plain(built) == _plain(build_config([str(out)], overrides))
    assert built.network.model == "RN50" and built.postprocessor.postprocessor_args.ens_bank_size == 7
    assert built.postprocessor.postprocessor_sweep.vsnl_top_k_list is None  # dropped by ants_ens.yml
    monkeypatch.chdir(tmp_path)
    out.write_text(out.read_text().replace("mark: default", "mark: mine"))
    assert build_config(["cifar10_clip_ants_ens.yml"]).mark == "mine"  # a user's file of that name wins


def test_stacked_clip_yml_takes_network_overrides(tmp_path):
    """OpenOOD's own stacking route: clip.yml states only the wiring, --network.KEY still works."""
    dataset = tmp_path / "dataset.yml"
    dataset.write_text("dataset: {name: cifar10, num_classes: 10}\noutput_dir: ./results/\nexp_name: x\n")
    config = build_config([str(dataset), str(network_yml())], ["--network.pretrained", "none"])
    assert {k: config.network[k] for k in ("pretrained", "model", "device", "seed", "class_names")} == {
        "pretrained": "none", "model": "ViT-B-16", "device": "auto", "seed": 0, "class_names": "cifar10"}


def _launch(args, isolated_cache, cwd, returncode=0, **env_extra):
    env = {**os.environ, "OPENOOD_IMMUNO_CACHE": str(isolated_cache), **env_extra}
    proc = subprocess.run([sys.executable, "-m", "openood_immuno.openood.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == returncode, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _results(out: Path, id_name: str, pp: str) -> Path:
    folder = out / f"{id_name}_clip_test_ood_ood_{pp}_default" / "s0" / "ood"
    assert (folder / "config.yml").is_file() and (folder / "log.txt").is_file()
    return folder


@pytest.mark.parametrize("name,args", [("mcm", {}), ("immuno", {"epochs": 2}), ("glmcm", {})])
def test_launcher_equals_builtin_runner(name, args, tiny_net, minibench, tmp_path, isolated_cache):
    pp = build_postprocessor(name, **args)
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False,
                         local=pp.needs_local_features)   # GL-MCM's per-patch features, as eval sets it
    ours = evaluate(pp, store)
    overrides = [x for k, v in args.items() for x in (f"--postprocessor.postprocessor_args.{k}", str(v))]
    _launch(["--config", f"imagenet_clip_{name}.yml", "--data_root", str(minibench),
             "--output_dir", str(tmp_path), *TINY, *overrides], isolated_cache, tmp_path)
    folder = _results(tmp_path, "imagenet", name)
    rows = [line.split(",") for line in (folder / "ood.csv").read_text().splitlines()]
    assert rows[0] == ["dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC", "status"]   # + our mark
    assert [r[0] for r in rows[1:]] == IMAGENET_ROWS
    assert {r[6] for r in rows[1:]} == {"RANDOM WEIGHTS: pretrained none"}
    id_scores = np.load(folder / "scores" / "imagenet.npz")
    acc = 100 * np.mean(id_scores["pred"] == id_scores["label"])  # main.py: ACC of the postprocessor's pred
    for row in rows[1:]:
        assert [float(x) for x in row[1:5]] == pytest.approx([round(v, 2) for v in ours.rows[row[0]][:4]],
                                                              abs=0.0101)
        assert float(row[5]) == pytest.approx(acc, abs=0.0051)
    np.testing.assert_allclose(id_scores["conf"], ours.scores["id"][1], atol=1e-6)
    for ood in ("ssb_hard", "ninco", "inaturalist", "textures", "openimage_o"):
        s = np.load(folder / "scores" / f"{ood}.npz")
        metrics = compute_all_metrics(np.concatenate([id_scores["conf"], s["conf"]]),
                                      np.concatenate([id_scores["label"], -np.ones_like(s["label"])]),
                                      np.concatenate([id_scores["pred"], s["pred"]]))
        assert 100 * metrics[1] == pytest.approx(ours.rows[ood][1], abs=1e-6)


def test_launcher_marks_ants_without_its_mllm_and_exits_3(minibench, tmp_path, isolated_cache):
    """Offline, the shipped config's MLLM (hf:Qwen/...) cannot load: the run is written, marked
    DEGRADED in ood.csv, log.txt and config.yml, and exits 3 unless --allow-degraded (eval's rule)."""
    small = {"n_neg_labels": 120, "corpus_limit": 600, "n_groups": 12, "group_size": 10}
    overrides = [x for k, v in small.items() for x in (f"--postprocessor.postprocessor_args.{k}", str(v))]
    args = ["--config", "imagenet_clip_ants.yml", "--data_root", str(minibench), "--output_dir", str(tmp_path),
            *TINY, *overrides]
    proc = _launch(args, isolated_cache, tmp_path, returncode=3, HF_HUB_OFFLINE="1")
    label = "DEGRADED: MLLM unavailable: NegLabel scores; RANDOM WEIGHTS: pretrained none"
    assert f"ants [{label}]" in proc.stderr and "--allow-degraded" in proc.stderr
    folder = _results(tmp_path, "imagenet", "ants")
    rows = [line.split(",") for line in (folder / "ood.csv").read_text().splitlines()]
    assert rows[0][-1] == "status" and [r[0] for r in rows[1:]] == IMAGENET_ROWS
    assert {r[-1] for r in rows[1:]} == {label}
    assert (folder / "log.txt").read_text().splitlines()[-1] == f"openood-immuno status: {label}"
    assert (folder / "config.yml").read_text().startswith(f"# openood-immuno status: {label}\n")
    _launch([*args, "--mark", "allowed", "--allow-degraded"], isolated_cache, tmp_path, HF_HUB_OFFLINE="1")
    allowed = tmp_path / "imagenet_clip_test_ood_ood_ants_allowed" / "s0" / "ood"
    assert (allowed / "log.txt").read_text().splitlines()[-1] == f"openood-immuno status: {label}"


def test_launcher_imagenet200_by_name(imagenet200_root, tmp_path, isolated_cache):
    _launch(["--config", "imagenet200_clip_mcm.yml", "--output_dir", str(tmp_path), *TINY,
             "--opts", "data_root", str(imagenet200_root)], isolated_cache, tmp_path)
    folder = _results(tmp_path, "imagenet200", "mcm")
    assert [line.split(",")[0] for line in (folder / "ood.csv").read_text().splitlines()[1:]] == IMAGENET_ROWS
    config = (folder / "config.yml").read_text()
    assert "class_names: imagenet200" in config and "benchmark_imglist/imagenet200/test_imagenet200.txt" in config
    id_scores = np.load(folder / "scores" / "imagenet200.npz")
    assert id_scores["pred"].max() < 200 and len(id_scores["label"]) == 40


def _openood_configs() -> Path:
    path = Path(os.environ.get("OPENOOD_SRC", Path(openood.__file__).parents[2])) / "configs"
    if not (path / "postprocessors").is_dir():
        pytest.skip(f"OpenOOD's configs/ not found at {path}: set OPENOOD_SRC to the OpenOOD checkout")
    return path


def test_openood_own_mcm_yml_loads_after_register():
    """OpenOOD's configs/postprocessors/mcm.yml (tau, tau_list) must keep working (needs the tau alias)."""
    from openood.pipelines import test_ood_pipeline
    from openood.utils.config import Config

    openood_immuno.register()
    config = Config(str(_openood_configs() / "postprocessors" / "mcm.yml"))
    pp = test_ood_pipeline.get_postprocessor(config)
    assert type(pp).method == "mcm" and pp.args["T"] == 1
