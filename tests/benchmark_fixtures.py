"""OpenOOD data_roots of the imagenet200 and cifar10 benchmarks, relabelled from the minibench.

The images are the minibench's (linked, not copied); only the lists are written, in
OpenOOD's layout for that benchmark (``openood_immuno.data.benchmarks``):

* imagenet200: the minibench's ImageNet photos of the 200 ImageNet-200 classes, labelled with
  their ImageNet-200 index (from the wnid in the file name); OOD lists are the minibench's.
* cifar10: the minibench's CIFAR-10 photos (its near/far stand-ins, ``<class>_NNNN.jpg``)
  labelled with their CIFAR-10 index as ID; stand-ins for the OOD sets: ImageNet photos
  (cifar100, tin, places365) and DTD textures split three ways (mnist, svhn, texture).

Lists are capped at a few dozen images to keep the backbone passes short.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.data.classnames import id_class_names, imagenet200_classes

CAP = 40


def cut_root(minibench: Path, root: Path, lists: dict[str, int]) -> Path:
    """A data_root at ``root`` whose ImageNet lists are the minibench's first ``lists[name]`` lines;
    ``images_largescale/`` is a real folder (its sub-folders link to minibench's), so a test can put
    odd files or another benchmark's images in it."""
    (root / "benchmark_imglist" / "imagenet").mkdir(parents=True)
    (root / "images_largescale").mkdir()
    for sub in (minibench / "images_largescale").iterdir():
        os.symlink(sub, root / "images_largescale" / sub.name)
    os.symlink(minibench / "images_classic", root / "images_classic")
    for name, n in lists.items():
        lines = (minibench / "benchmark_imglist" / "imagenet" / name).read_text().splitlines()[:n]
        (root / "benchmark_imglist" / "imagenet" / name).write_text("\n".join(lines) + "\n")
    return root


def _read(minibench: Path, name: str) -> list[tuple[str, int]]:
    lines = (minibench / "benchmark_imglist" / "imagenet" / name).read_text().split("\n")
    return [(p, int(lab)) for p, lab in (line.split() for line in lines if line.strip())]


def _write(root: Path, imglist: str, rows) -> None:
    path = root / imglist
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p} {lab}\n" for p, lab in rows))


def _link(root: Path, name: str, target: Path) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, root / name)


def make_imagenet200_root(minibench: Path, root: Path) -> Path:
    index = {w: i for i, (w, _) in enumerate(imagenet200_classes())}
    bench = BENCHMARKS["imagenet200"]
    for folder in ("images_largescale", "images_classic"):
        _link(root, folder, minibench / folder)
    for split, spec in bench.id.items():
        rows = [(p, index[Path(p).name.split("_")[0]]) for p, _ in _read(minibench, f"{split}_imagenet.txt")
                if Path(p).name.split("_")[0] in index]
        _write(root, spec.imglist, rows[:CAP])
    for name, spec in {"val_openimage_o": bench.ood_val, **bench.near, **bench.far}.items():
        source = name if name.startswith("val_") else f"test_{name}"
        _write(root, spec.imglist, _read(minibench, f"{source}.txt")[:CAP])
    return root


def make_cifar10_root(minibench: Path, root: Path) -> Path:
    classes = {c: i for i, c in enumerate(id_class_names("cifar10"))}
    bench = BENCHMARKS["cifar10"]
    for name in ("ssb_hard", "ninco", "inaturalist", "openimage_o", "imagenet_1k"):
        _link(root, f"images_classic/{name}", minibench / "images_largescale" / name)
    _link(root, "images_classic/texture", minibench / "images_classic" / "texture")

    def cifar(list_name: str, n: int):
        return [(p, classes[Path(p).name.rsplit("_", 1)[0]]) for p, _ in _read(minibench, list_name)][:n]

    _write(root, bench.id["train"].imglist, cifar("test_ssb_hard.txt", CAP))
    _write(root, bench.id["val"].imglist, cifar("val_openimage_o.txt", 20))
    _write(root, bench.id["test"].imglist, cifar("test_ninco.txt", CAP) + cifar("test_inaturalist.txt", 20))
    imagenet = [(p, -1) for p, _ in _read(minibench, "test_imagenet.txt")]
    textures = [(p, -1) for p, _ in _read(minibench, "test_textures.txt")]
    ood = {"tin_val": imagenet[:20], "cifar100": imagenet[20:50], "tin": imagenet[50:80],
           "places365": imagenet[80:110], "mnist": textures[0:300:10], "svhn": textures[1:300:10],
           "texture": textures[2:300:10]}
    _write(root, bench.ood_val.imglist, ood.pop("tin_val"))
    for name, spec in {**bench.near, **bench.far}.items():
        _write(root, spec.imglist, ood[name])
    return root


@pytest.fixture(scope="session")
def imagenet200_root(minibench, tmp_path_factory) -> Path:
    return make_imagenet200_root(minibench, tmp_path_factory.mktemp("imagenet200_root"))


@pytest.fixture(scope="session")
def cifar10_root(minibench, tmp_path_factory) -> Path:
    return make_cifar10_root(minibench, tmp_path_factory.mktemp("cifar10_root"))
