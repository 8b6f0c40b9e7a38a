"""OpenOOD ``main.py`` run configs are built from the defaults, never shipped: every
``<id>_clip_<postprocessor>.yml`` resolves to the params dataclasses (and the differences its
postprocessor yml states), ``configs/networks/clip.yml`` states only the wiring, the launcher
builds a config for a bare name (a user's file wins), and ``openood-immuno openood-config``
prints or writes one. No OpenOOD needed (tests/test_openood_main.py runs them through OpenOOD)."""
import os
import warnings
from importlib import resources

import pytest
import yaml

from openood_immuno.cli import main, run
from openood_immuno.cli.args import UsageError
from openood_immuno.core.ymlconfig import load_postprocessor_config, resolve_postprocessor
from openood_immuno.postprocessors.registry import registrable_postprocessors
from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.openood.configs import config_name, load, network_yml, parse_config_name, render
from openood_immuno.openood.main import config_source, with_network_defaults
from openood_immuno.openood.network_params import CLIPNetworkParams
from openood_immuno.openood.registry import postprocessor_class, resolved_params

WIRING = {"name", "class_names", "num_classes"}


def test_no_run_config_is_shipped():
    folder = resources.files("openood_immuno.configs")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__") == [
        "networks", "postprocessors"]


def _lists(section: dict) -> dict:
    """``{split or set: imglist}`` of a dataset / ood_dataset section, ``'@{data_root}'/`` removed."""
    out = {}
    for split in section["split_names"]:
        entry = section[split]
        for name in entry.get("datasets", [None]):
            leaf = entry if name is None else entry[name]
            out[name or split] = leaf["imglist_pth"].removeprefix("'@{data_root}'/")
    return out


@pytest.mark.parametrize("id_name", list(BENCHMARKS))
def test_every_run_config_resolves_to_the_dataclass_defaults(id_name):
    bench = BENCHMARKS[id_name]
    for pp in registrable_postprocessors():   # OpenOOD's own names (msp, knn...) keep OpenOOD's configs
        config = load(id_name, pp)
        assert parse_config_name(config_name(id_name, pp)) == (id_name, pp)
        network = config["network"]
        assert set(network) == WIRING | set(CLIPNetworkParams.names())
        assert CLIPNetworkParams.of(network) == CLIPNetworkParams()
        assert network["templates"] == list(bench.templates) and config["preprocessor"] == {"name": "clip"}
        assert config["dataset"]["name"] == id_name and config["dataset"]["num_classes"] == bench.num_classes
        assert _lists(config["dataset"]) == {s: spec.imglist for s, spec in bench.id.items()}
        assert _lists(config["ood_dataset"]) == {"val": bench.ood_val.imglist, **{
            n: spec.imglist for n, spec in {**bench.near, **bench.far}.items()}}
        section = config["postprocessor"]
        params_class = postprocessor_class(load_postprocessor_config(pp)).params_class
        got = params_class.from_config(section["postprocessor_args"], section["postprocessor_sweep"])
        assert got == resolved_params(pp)
        # every argument is written out; those that differ from the dataclass are exactly what
        # the postprocessor's yml (and its base: chain) states
        stated = params_class.canonical(resolve_postprocessor(pp).get("postprocessor_args") or {})
        defaults = params_class().as_args()
        assert set(section["postprocessor_args"]) == set(defaults)
        assert {k for k, v in section["postprocessor_args"].items() if v != defaults[k]} <= set(stated)
        assert {k for k, v in section["postprocessor_sweep"].items() if v is not None} == {
            f"{k}_list" for k in got[1]}  # a list the yml drops is written as null
        assert {k: v for k, v in section.items() if k not in ("postprocessor_args", "postprocessor_sweep")} \
            == {k: v for k, v in resolve_postprocessor(pp).items()
                if k not in ("postprocessor_args", "postprocessor_sweep")}


def test_network_yml_states_only_the_wiring_and_loads_the_defaults(isolated_cache):
    data = yaml.safe_load(network_yml().read_text())
    assert set(data["network"]) == WIRING and data["preprocessor"] == {"name": "clip"}
    assert CLIPNetworkParams.of(data["network"]) == CLIPNetworkParams()
    assert CLIPNetworkParams().as_args() == {"model": "ViT-B-16", "pretrained": "openai",
                                             "templates": ["a photo of a {}."], "device": "auto", "seed": 0}
    from openood_immuno.openood.network import clip_net_from_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = clip_net_from_config({**data["network"], "class_names": "cifar10", "num_classes": 10,
                                    "model": "ImmunoTiny-ViT", "pretrained": "none", "device": "cpu"})
    assert list(net.templates) == ["a photo of a {}."] and net.device.type == "cpu" and len(net.class_names) == 10
    with pytest.raises(ValueError, match=r"network config: network.seed must be"):
        CLIPNetworkParams.of({"seed": -1})


def test_launcher_fills_missing_network_fields_only():
    config = {"network": {"name": "clip", "class_names": "cifar10", "model": "RN50"}}
    with_network_defaults(config)
    assert config["network"] == {"name": "clip", "class_names": "cifar10", "model": "RN50",
                                 "pretrained": "openai", "templates": ["a photo of a {}."],
                                 "device": "auto", "seed": 0}
    other = {"network": {"name": "resnet50"}}
    with_network_defaults(other)
    assert other == {"network": {"name": "resnet50"}}


def test_launcher_builds_a_bare_name_and_a_users_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_source("cifar100_clip_neglabel.yml") == load("cifar100", "neglabel")
    (tmp_path / "cifar100_clip_neglabel.yml").write_text("seed: 3\n")
    assert config_source("cifar100_clip_neglabel.yml") == "cifar100_clip_neglabel.yml"
    with pytest.raises(FileNotFoundError, match=r"'configs/openood/imagenet_clip_mcm.yml' is not a file: the "
                                                r"run config 'imagenet_clip_mcm.yml' is built when given by its "
                                                r"bare name, or written with `openood-immuno openood-config mcm "
                                                r"--id imagenet --out configs/openood/imagenet_clip_mcm.yml`"):
        config_source("configs/openood/imagenet_clip_mcm.yml")
    with pytest.raises(FileNotFoundError, match=r"'imagenet_clip_mcn.yml' is neither a file nor a run-config "
                                                r"name <id>_clip_<postprocessor>.yml with <id> one of"):
        config_source("imagenet_clip_mcn.yml")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        config_source(str(tmp_path))


def test_openood_config_command_prints_and_writes(tmp_path, capsys):
    assert main(["openood-config", "mcm", "--id", "cifar10"]) == 0
    out = capsys.readouterr()
    assert out.out == render("cifar10", "mcm") and out.err == ""
    assert "openood-immuno openood-config mcm --id cifar10" in out.out.splitlines()[1]
    target = tmp_path / "sub" / "imagenet_clip_immuno.yml"
    target.parent.mkdir()
    target.write_text("old")
    assert main(["openood-config", "immuno", "--out", str(target)]) == 0  # --id imagenet by default
    assert target.read_text() == render("imagenet", "immuno")
    assert os.listdir(target.parent) == [target.name]  # replaced atomically, no temporary left
    assert f"wrote {target}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["mcm", "--out", "{tmp}"], "--out '{tmp}' is a folder: give a file path, e.g. {tmp}/imagenet_clip_mcm.yml"),
    (["mcm", "--out", "{tmp}/x.yaml"], "--out '{tmp}/x.yaml' must end in .yml"),
    (["mcn"], "NAME 'mcn' is not a postprocessor (did you mean 'mcm'?)"),
], ids=["folder", "suffix", "unknown"])
def test_openood_config_refuses_bad_input_in_one_line(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(UsageError):
        main(["openood-config", *argv])
    assert run(["openood-config", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("openood-immuno: error: ")
    assert message.format(tmp=tmp_path) in err
    assert os.listdir(tmp_path) == []


def test_main_route_refuses_our_own_knn_bank_ratio_that_openoods_knn_would_ignore():
    from openood_immuno.openood.main import _check_builtin_args as check   # check_run's first step

    config = yaml.safe_load(render("imagenet", "knn"))
    check(config)   # the defaults: OpenOOD's knn computes the same thing
    config["postprocessor"]["postprocessor_args"]["bank_ratio"] = 0.01
    with pytest.raises(ValueError, match=r"bank_ratio: 0.01 is read by openood-immuno's 'knn' only.*"
                                         r"--pp-arg knn.bank_ratio="):
        check(config)
