"""ImageNet-O's image list in OpenOOD's layout, written from the official release (no network).

ImageNet-O (Hendrycks, Zhao, Basart, Steinhardt and Song, "Natural Adversarial Examples", CVPR
2021) is released as ``imagenet-o.tar``: a folder ``imagenet-o/`` holding one sub-folder per
ImageNet class (WordNet id, e.g. ``n01443537/``), 200 of them, with 2,000 JPEG images in all
(and a ``README.txt``). OpenOOD v1.5 ships no list for it; the ``immuno_vlm`` benchmark
(:data:`openood_immuno.data.benchmarks.IMAGENET_O`) reads it like OpenOOD's OOD lists::

    DATA_ROOT/images_largescale/imagenet_o/<wnid>/<file>.jpg     the images
    DATA_ROOT/benchmark_imglist/imagenet/test_imagenet_o.txt     imagenet_o/<wnid>/<file>.jpg -1

:func:`write_imagenet_o_list` writes that list from the folder (sorted, one ``path -1`` line per
image: every ImageNet-O image is OOD for ImageNet-1K).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from openood_immuno.core.cache import atomic_write_text
from .benchmarks import IMAGENET_O, IMAGENET_O_DIR

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OFFICIAL_IMAGES, OFFICIAL_CLASSES = 2000, 200   # the release (Hendrycks et al., 2021)


@dataclass(frozen=True)
class WrittenList:
    path: Path
    images: int
    classes: int

    @property
    def official(self) -> bool:
        """The counts of the official release (2,000 images in 200 class folders)."""
        return (self.images, self.classes) == (OFFICIAL_IMAGES, OFFICIAL_CLASSES)


def imagenet_o_lines(data_root: str) -> tuple[list[str], int]:
    """The list lines (``imagenet_o/<class>/<file> -1``, sorted) of the images under
    ``DATA_ROOT/images_largescale/imagenet_o/<class>/``, and the number of class folders holding
    images; ``ValueError`` (one line naming the folder and the fix) when there are none or a
    path cannot be written in a list (whitespace)."""
    folder = Path(data_root) / IMAGENET_O.data_dir / IMAGENET_O_DIR
    if not folder.is_dir():
        raise ValueError(f"ImageNet-O folder {str(folder)!r} not found: extract imagenet-o.tar "
                         f"(Hendrycks et al., 2,000 images in 200 class folders) and move its "
                         f"imagenet-o/ folder there, e.g. `tar -xf imagenet-o.tar -C "
                         f"{Path(data_root) / IMAGENET_O.data_dir} && mv "
                         f"{Path(data_root) / IMAGENET_O.data_dir / 'imagenet-o'} {folder}`")
    lines, classes = [], 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(f.name for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        for name in images:
            rel = f"{IMAGENET_O_DIR}/{sub.name}/{name}"
            if any(c.isspace() for c in rel):
                raise ValueError(f"{str(sub / name)!r}: a path with whitespace cannot be a list line "
                                 "('relative/path label'): rename the file")
            lines.append(f"{rel} -1")
        classes += bool(images)
    if not lines:
        raise ValueError(f"ImageNet-O folder {str(folder)!r} holds no <class>/<image>.jpg files: it must "
                         "hold the release's class folders (n01443537/, ...), not the imagenet-o/ folder "
                         "one level deeper or the tar file")
    return lines, classes


def write_imagenet_o_list(data_root: str) -> WrittenList:
    """Write ``DATA_ROOT/benchmark_imglist/imagenet/test_imagenet_o.txt`` from the images under
    ``DATA_ROOT/images_largescale/imagenet_o/`` (atomically, replacing an older list)."""
    lines, classes = imagenet_o_lines(data_root)
    path = Path(data_root) / IMAGENET_O.imglist
    os.makedirs(path.parent, exist_ok=True)
    atomic_write_text("\n".join(lines) + "\n", path)
    return WrittenList(path, len(lines), classes)
