"""ID class names of OpenOOD v1.5's four benchmarks, in OpenOOD's label order, shipped as package data.

* ``imagenet``: the 1000 ImageNet-1K synsets in sorted wnid order (OpenOOD's label = that index),
  named with CLIP's cleaned class names (``data/imagenet_classes.json``).
* ``imagenet200``: OpenOOD's 200-class subset, whose classes are those of ImageNet-R (OpenOOD
  issue #175); label = index of the wnid in sorted order (``data/imagenet200_wnids.txt``;
  OpenOOD's ``train_imagenet200.txt`` starts ``imagenet_1k/train/n01443537/... 0``), named as
  in ``imagenet``. :func:`check_label_order` verifies it against a benchmark's own list.
* ``cifar10`` / ``cifar100``: the CIFAR label order (alphabetical, as torchvision and OpenOOD's
  lists use it), CIFAR-100's underscores written as spaces (CLIP's names).

A custom ID set is a text file with one class name per line, in label order.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

_DATA = Path(__file__).parent
ID_DATASETS = ("imagenet", "imagenet200", "cifar10", "cifar100")


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """``((wnid, name), ...)`` for the 1000 ImageNet-1K classes in label order."""
    rows = json.loads((_DATA / "imagenet_classes.json").read_text(encoding="utf-8"))["classes"]
    return tuple((r["wnid"], r["name"]) for r in rows)


@lru_cache(maxsize=None)
def imagenet200_classes() -> tuple[tuple[str, str], ...]:
    """``((wnid, name), ...)`` for OpenOOD's ImageNet-200 in its label order."""
    names = dict(imagenet_classes())
    return tuple((w, names[w]) for w in _lines(_DATA / "imagenet200_wnids.txt"))


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, one per line in label order (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file {str(path)!r} does not exist: write one class name per line")
    names = _lines(path)
    if not names:
        raise ValueError(f"class-name file {str(path)!r} is empty: write one class name per line")
    return names


def id_class_names(id_name: str) -> list[str]:
    """Class names of one of :data:`ID_DATASETS`, in OpenOOD's label order."""
    if id_name == "imagenet":
        return [name for _, name in imagenet_classes()]
    if id_name == "imagenet200":
        return [name for _, name in imagenet200_classes()]
    if id_name in ("cifar10", "cifar100"):
        return _lines(_DATA / f"{id_name}_classes.txt")
    raise ValueError(f"unknown ID dataset {id_name!r}: use one of {ID_DATASETS}")


def resolve_class_names(class_names: str | os.PathLike | Sequence[str]) -> list[str]:
    """An ID dataset name, a class-name file, or a sequence of names -> the list of names."""
    if isinstance(class_names, (str, os.PathLike)):
        if str(class_names) in ID_DATASETS:
            return id_class_names(str(class_names))
        if os.path.isfile(class_names):
            return read_class_file(class_names)
        raise ValueError(f"unknown ID dataset {str(class_names)!r}: use one of {ID_DATASETS}, the path of "
                         "a class-name file (one name per line) or a list of names")
    names = list(class_names)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError("class_names must be a non-empty list of non-empty strings")
    return names


def check_label_order(imglist: str | os.PathLike, id_name: str) -> int:
    """Check that a list's ``.../<wnid>/...`` or ``<wnid>_...`` paths carry OpenOOD's label of that wnid.

    Returns the number of lines checked (lines without a wnid in the path are skipped);
    raises ValueError naming the first line whose label disagrees with the shipped order.
    """
    wnids = {"imagenet": imagenet_classes, "imagenet200": imagenet200_classes}
    if id_name not in wnids:
        raise ValueError(f"label order can be checked from wnids only for {sorted(wnids)}, not {id_name!r}")
    index = {w: i for i, (w, _) in enumerate(wnids[id_name]())}
    checked = 0
    with open(imglist, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if len(parts) < 2:
                continue
            found = [p.split("_")[0] for p in parts[0].split("/") if p[:1] == "n" and p[1:9].isdigit()]
            if not found:
                continue
            label, wnid = int(parts[1]), found[-1]
            if index.get(wnid) != label:
                raise ValueError(f"{imglist}:{lineno}: {wnid} has label {label} but {id_name}'s label "
                                 f"order gives it {index.get(wnid, 'no label (not a class)')}")
            checked += 1
    return checked
