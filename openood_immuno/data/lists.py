"""Reading OpenOOD's ``data_root`` layout without OpenOOD.

A list file ``benchmark_imglist/<id>/<split>.txt`` has one ``relative/path label`` per line
(label -1 for OOD); paths are relative to ``data_root/<data_dir>``. The benchmarks' lists are
in :mod:`openood_immuno.data.benchmarks`.

Lists are checked when read: UTF-8 (a BOM is tolerated and named), one line per image (a
path listed twice is an error), labels in ``[0, num_classes)`` for ID lists and -1 for OOD.
Images of every PIL mode become 8-bit RGB; 16-bit, 32-bit and float images are scaled by
their dynamic range (:func:`to_8bit`), never clipped.
"""
from __future__ import annotations

import logging
import os
import stat
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from openood_immuno.core.textfiles import read_utf8_file
from .benchmarks import ListSpec

log = logging.getLogger(__name__)


def read_list_text(path: str) -> str:
    """A list file's text: UTF-8 (a BOM is dropped with a warning naming the file), else one
    error naming the file, the encoding found and the ``iconv`` command that fixes it
    (:func:`openood_immuno.core.textfiles.read_utf8_file`)."""
    return read_utf8_file(path, "image list", "check --data-root (it must hold OpenOOD's "
                                              "benchmark_imglist/ folder)")


def read_imglist(path: str, num_classes: Optional[int] = None,
                 id_list: bool = False) -> list[tuple[str, int]]:
    """Parse a list file into ``[(relative_path, label), ...]`` with errors that name the line.

    ``id_list``: labels must be class indices (``-1`` marks OOD images, which an ID list must
    not hold: they would be scored as OOD). A path listed twice is refused, also when only its
    spelling differs (``./a.jpg``, ``a//b.jpg``, ``a/../a/b.jpg``: compared after
    ``os.path.normpath``).
    """
    rows = []
    first_line: dict[str, int] = {}
    duplicates: list[tuple[str, int, int]] = []
    for lineno, line in enumerate(read_list_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, label = parts[0], int(parts[1])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{lineno}: expected 'relative/path label', got {line.strip()!r}")
        if id_list and label < 0:
            raise ValueError(f"{path}:{lineno}: label {label} in an ID list: ID labels are class "
                             f"indices in [0, {num_classes}); OOD images (label -1) belong in an "
                             "OOD list")
        if label < -1 or (num_classes is not None and label >= num_classes):
            raise ValueError(f"{path}:{lineno}: label {label} out of range [-1, {num_classes}); "
                             "ID labels are class indices and OOD images use -1")
        norm = os.path.normpath(rel)
        if norm in first_line:
            duplicates.append((rel, first_line[norm], lineno))
        else:
            first_line[norm] = (lineno, rel)
        rows.append((rel, label))
    if duplicates:
        shown = ", ".join(f"{rel!r} at lines {a} and {b}" + (f" (as {first!r})" if first != rel else "")
                          for rel, (a, first), b in duplicates[:3])
        respelled = any(rel != first for rel, (_, first), _ in duplicates)
        raise ValueError(f"image list {path!r} lists {len(duplicates)} image(s) more than once "
                         f"(e.g. {shown}){' (paths are compared normalised: ./x, a//x and a/../a/x' if respelled else ''}"
                         f"{' are the same file as x and a/x)' if respelled else ''}: remove the duplicated lines")
    if not rows:
        raise ValueError(f"image list {path!r} is empty: it must list at least one image")
    return rows


def _special_kind(mode: int) -> Optional[str]:
    """``'a FIFO'``, ``'a device'``, ``'a socket'``, ``'a folder'`` for a non-regular file, else None."""
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_regular_image(path: str, listed_in: str = "") -> None:
    """Refuse a listed image that is a FIFO, device, socket or folder (reading a FIFO or a
    terminal would block the run forever); a missing file is left to the loader."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    kind = _special_kind(mode)
    if kind is not None:
        where = f" (listed in {listed_in})" if listed_in else ""
        raise ValueError(f"image {path!r}{where} is {kind}, not an image file: replace it with the "
                         "image or remove its line from the list")


def check_regular_images(data_dir: str, rows: list[tuple[str, int]], listed_in: str) -> None:
    """:func:`check_regular_image` for every row of a list (one ``stat`` per image), before any
    model is built."""
    for rel, _ in rows:
        check_regular_image(os.path.join(data_dir, rel), listed_in)


HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image (PIL modes ``I;16*``, ``I``, ``F``) as 8-bit ``L``.

    Values are scaled by the image's dynamic range, ``255 (v - min) / (max - min)``, so a 12-bit
    scan in a 16-bit file keeps its contrast instead of being clipped to white; NaN and inf count
    as ``min``. A constant image becomes black (value <= 0) or white.
    """
    arr = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return Image.new("L", img.size, 0)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    arr = np.where(finite, arr, lo)
    if hi > lo:
        out = np.rint((arr - lo) * (255.0 / (hi - lo)))
    else:
        out = np.full(arr.shape, 0 if lo <= 0 else 255)
    return Image.fromarray(out.astype(np.uint8), "L")


def load_rgb(path: str, listed_in: str = "") -> Image.Image:
    """Open an image as RGB (grayscale, palette, CMYK, 16/32-bit and float converted); clear error
    when unreadable or over PIL's decompression-bomb limit."""
    where = f" (listed in {listed_in})" if listed_in else ""
    check_regular_image(path, listed_in)
    try:
        with Image.open(path) as img:
            img.load()
            return (to_8bit(img) if img.mode in HIGH_BIT_MODES else img).convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path!r}{where} does not exist: fix the list or data_root")
    except Image.DecompressionBombError as exc:
        raise RuntimeError(f"image {path!r}{where} is too large to open safely ({exc}): shrink it, "
                           "remove its line from the list, or raise PIL.Image.MAX_IMAGE_PIXELS if "
                           "you trust the file") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RuntimeError(f"image {path!r}{where} is corrupt or truncated ({exc}): replace the "
                           "file or remove its line from the list") from exc


class ImglistDataset(Dataset):
    """Images of one list, as OpenOOD's ``ImglistDataset`` yields them.

    Items are dicts with ``data`` (transformed image), ``label``, ``image_name`` and ``index``.
    ``id_list`` (default ``spec.id_list``): refuse OOD labels (-1), as in an ID list.
    ``imglist`` and ``data_dir`` mirror OpenOOD's attributes (feature caches key on them).
    """

    def __init__(self, data_root: str, spec: ListSpec, transform: Callable,
                 num_classes: Optional[int] = None, id_list: Optional[bool] = None):
        self.name = spec.name
        self.list_path = os.path.join(data_root, spec.imglist)
        self.data_dir = os.path.join(data_root, spec.data_dir)
        self.samples = read_imglist(self.list_path, num_classes,
                                    spec.id_list if id_list is None else id_list)
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
