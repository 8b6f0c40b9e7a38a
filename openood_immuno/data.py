"""Reading OpenOOD's ``data_root`` layout without OpenOOD.

A list file ``benchmark_imglist/<id>/<split>.txt`` has one ``relative/path label`` per line
(label -1 for OOD); paths are relative to ``data_root/<data_dir>``. The benchmarks' lists are
in :mod:`openood_immuno.benchmarks`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class ListSpec:
    """One image list of the benchmark: where its images live and which file lists them."""

    name: str
    data_dir: str
    imglist: str


def read_imglist(path: str, num_classes: Optional[int] = None) -> list[tuple[str, int]]:
    """Parse a list file into ``[(relative_path, label), ...]`` with errors that name the line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image list {path!r} not found: check --data-root (it must hold "
                                "OpenOOD's benchmark_imglist/ folder)")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                rel, label = parts[0], int(parts[1])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{lineno}: expected 'relative/path label', got {line.strip()!r}")
            if label < -1 or (num_classes is not None and label >= num_classes):
                raise ValueError(f"{path}:{lineno}: label {label} out of range [-1, {num_classes}); "
                                 "ID labels are class indices and OOD images use -1")
            rows.append((rel, label))
    if not rows:
        raise ValueError(f"image list {path!r} is empty: it must list at least one image")
    return rows


def load_rgb(path: str, listed_in: str = "") -> Image.Image:
    """Open an image as RGB (grayscale, palette, CMYK converted); clear error when unreadable."""
    where = f" (listed in {listed_in})" if listed_in else ""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path!r}{where} does not exist: fix the list or data_root")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RuntimeError(f"image {path!r}{where} is corrupt or truncated ({exc}): replace the "
                           "file or remove its line from the list") from exc


class ImglistDataset(Dataset):
    """Images of one list, as OpenOOD's ``ImglistDataset`` yields them.

    Items are dicts with ``data`` (transformed image), ``label``, ``image_name`` and ``index``.
    ``imglist`` and ``data_dir`` mirror OpenOOD's attributes (feature caches key on them).
    """

    def __init__(self, data_root: str, spec: ListSpec, transform: Callable,
                 num_classes: Optional[int] = None):
        self.name = spec.name
        self.list_path = os.path.join(data_root, spec.imglist)
        self.data_dir = os.path.join(data_root, spec.data_dir)
        self.samples = read_imglist(self.list_path, num_classes)
        self.imglist = [f"{p} {lab}" for p, lab in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, index: int) -> str:
        return os.path.join(self.data_dir, self.samples[index][0])

    def __getitem__(self, index: int) -> dict:
        rel, label = self.samples[index]
        img = load_rgb(self.image_path(index), self.list_path)
        return {"data": self.transform(img), "label": torch.tensor(label), "image_name": rel,
                "index": index}


def make_loader(dataset: Dataset, batch_size: int = 128, num_workers: int = 2) -> DataLoader:
    """Deterministic (unshuffled) loader for scoring or feature extraction."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
