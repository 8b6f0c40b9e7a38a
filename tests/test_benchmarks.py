"""OpenOOD v1.5's four benchmarks, their class names and label order, the MOS preset, shipped configs."""
import warnings

import pytest
import yaml
from benchmark_fixtures import cifar10_root, imagenet200_root  # noqa: F401  (fixtures)

from openood_immuno import build_clip_net, build_postprocessor
from openood_immuno.data.benchmarks import BENCHMARKS, MOS_FOUR, get_benchmark
from openood_immuno.data.classnames import (ID_DATASETS, check_label_order, id_class_names,
                                       imagenet200_classes, imagenet_classes, resolve_class_names)
from openood_immuno.openood.registry import registrable_postprocessors
from openood_immuno.openood.configs import config_name, render, shipped_config_dir
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate


def test_table_is_openood_v15_evaluation_api():
    assert set(BENCHMARKS) == set(ID_DATASETS)
    assert {n: (b.num_classes, list(b.near), list(b.far)) for n, b in BENCHMARKS.items()} == {
        "imagenet": (1000, ["ssb_hard", "ninco"], ["inaturalist", "textures", "openimage_o"]),
        "imagenet200": (200, ["ssb_hard", "ninco"], ["inaturalist", "textures", "openimage_o"]),
        "cifar10": (10, ["cifar100", "tin"], ["mnist", "svhn", "texture", "places365"]),
        "cifar100": (100, ["cifar10", "tin"], ["mnist", "svhn", "texture", "places365"])}
    i200 = BENCHMARKS["imagenet200"]
    assert i200.id["test"].imglist == "benchmark_imglist/imagenet200/test_imagenet200.txt"
    assert i200.far["textures"].data_dir == "images_classic/"
    assert i200.ood_val.imglist == "benchmark_imglist/imagenet200/val_openimage_o.txt"
    assert BENCHMARKS["cifar10"].ood_val.imglist == "benchmark_imglist/cifar10/val_tin.txt"
    assert all(b.templates == ("a photo of a {}.",) for b in BENCHMARKS.values())


def test_class_names_in_openood_label_order():
    assert [len(id_class_names(n)) for n in ID_DATASETS] == [1000, 200, 10, 100]
    wnids = [w for w, _ in imagenet200_classes()]
    assert wnids == sorted(wnids) and len(set(wnids)) == 200
    assert wnids[0] == "n01443537"  # OpenOOD's train_imagenet200.txt: .../n01443537/... 0
    in1k = dict(imagenet_classes())
    assert id_class_names("imagenet200")[:3] == ["goldfish", "great white shark", "hammerhead shark"]
    assert all(in1k[w] == n for w, n in imagenet200_classes())
    assert id_class_names("cifar10")[0] == "airplane" and id_class_names("cifar10")[-1] == "truck"
    assert id_class_names("cifar100")[:2] == ["apple", "aquarium fish"]


def test_custom_class_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("cat\n\ndog\n")
    assert resolve_class_names(str(path)) == ["cat", "dog"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        resolve_class_names(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="unknown ID dataset 'imagenet2k'"):
        resolve_class_names("imagenet2k")


def test_imagenet200_fixture_labels_follow_the_mapping(imagenet200_root):
    test_list = imagenet200_root / BENCHMARKS["imagenet200"].id["test"].imglist
    assert check_label_order(test_list, "imagenet200") == 40
    wrong = imagenet200_root / "wrong.txt"
    wrong.write_text("imagenet_1k/val/n01443537_goldfish.JPEG 1\n")
    with pytest.raises(ValueError, match="n01443537 has label 1 but imagenet200's label order gives it 0"):
        check_label_order(wrong, "imagenet200")
    assert check_label_order(wrong.parent / "benchmark_imglist/imagenet200/test_ninco.txt", "imagenet200") == 0


def test_mos_preset():
    mos = get_benchmark("imagenet", "mos")
    assert mos.near == {} and list(mos.far) == ["inaturalist", "sun", "places", "textures"] == list(MOS_FOUR)
    assert mos.far["sun"].imglist == "benchmark_imglist/mos/test_sun.txt"
    assert mos.id == BENCHMARKS["imagenet"].id
    with pytest.raises(ValueError, match="OOD sets of ImageNet-1K"):
        get_benchmark("cifar10", "mos")
    with pytest.raises(ValueError, match="unknown benchmark"):
        get_benchmark("tinyimagenet")


def _tiny(id_name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_clip_net("ImmunoTiny-ViT", "none", id_name)


@pytest.mark.parametrize("id_name,rows", [
    ("imagenet200", ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]),
    ("cifar10", ["cifar100", "tin", "nearood", "mnist", "svhn", "texture", "places365", "farood"])])
def test_builtin_runner_on_benchmark_fixture(id_name, rows, request):
    root = request.getfixturevalue(f"{id_name}_root")
    net = _tiny(id_name)
    assert len(net.class_names) == BENCHMARKS[id_name].num_classes
    store = FeatureStore(net, str(root), BenchmarkLists.of(get_benchmark(id_name)), id_name, 64, 0,
                         progress=False)
    result = evaluate(build_postprocessor("mcm", id_name), store)
    assert list(result.rows) == rows
    assert all(0 <= v[1] <= 100 for v in result.rows.values())


def test_mos_rows_have_no_near_group(tiny_net, minibench, tmp_path):
    for folder in ("images_largescale", "images_classic"):
        (tmp_path / folder).symlink_to(minibench / folder)
    (tmp_path / "benchmark_imglist/mos").mkdir(parents=True)
    (tmp_path / "benchmark_imglist/imagenet").symlink_to(minibench / "benchmark_imglist/imagenet")
    source = {name: (minibench / "benchmark_imglist/imagenet" / f"test_{src}.txt").read_text().splitlines()
              for name, src in (("largescale", "ninco"), ("textures", "textures"))}
    for i, (name, spec) in enumerate(MOS_FOUR.items()):
        lines = source["textures" if name == "textures" else "largescale"][i::30]
        (tmp_path / spec.imglist).write_text("\n".join(lines) + "\n")
    store = FeatureStore(tiny_net, str(tmp_path), BenchmarkLists.of(get_benchmark("imagenet", "mos")),
                         num_workers=0, progress=False)
    result = evaluate(build_postprocessor("mcm"), store)
    assert list(result.rows) == ["inaturalist", "sun", "places", "textures", "farood"]


def test_shipped_run_configs_are_the_generated_ones():
    shipped = sorted(p.name for p in shipped_config_dir().glob("*.yml"))
    assert shipped == sorted(config_name(b, p) for b in BENCHMARKS for p in registrable_postprocessors())
    for name in shipped:
        id_name, pp = name[:-4].split("_clip_")
        text = (shipped_config_dir() / name).read_text()
        assert text == render(id_name, pp), f"{name} is stale: python -m openood_immuno.openood.configs configs/openood"
        config = yaml.safe_load(text)
        assert config["network"]["name"] == "clip" and config["preprocessor"]["name"] == "clip"
        assert config["postprocessor"]["name"] == pp and config["dataset"]["name"] == id_name
