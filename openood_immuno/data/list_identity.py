"""What a feature-cache entry must match: its image list, line by line, and each image's identity.

Split from :mod:`openood_immuno.data.features` (which re-exports :class:`ListIdentity`), whose
module docstring states the cache rules.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from openood_immuno.core.fileid import content_digest, is_racy, now_ns, stat_identities


def _list_lines(dataset) -> list[str]:
    return [line.strip() for line in dataset.imglist]


def _lines_digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ListIdentity:
    """What a feature-cache entry must match, taken before the images are read: the list's
    lines (digest, count), each line's image path, and each image's stat identity
    (:func:`~openood_immuno.core.fileid.stat_identity`, git's index rule) with, for the racy
    ones (mtime not older than ``taken_ns``), the content digest."""

    n: int
    lines_sha256: str
    paths: tuple[str, ...]
    stats: np.ndarray
    taken_ns: int
    racy: Mapping[int, str]

    @classmethod
    def of(cls, dataset) -> "ListIdentity":
        lines = _list_lines(dataset)
        paths = tuple(os.path.join(dataset.data_dir, line.split()[0]) if line.split() else ""
                      for line in lines)
        taken = now_ns()
        stats = stat_identities(paths)
        racy = {int(i): content_digest(paths[i])   # regular files only (a FIFO would block)
                for i in np.flatnonzero(is_racy(stats[:, 1], taken) & (stats[:, 0] >= 0))
                if os.path.isfile(paths[i])}
        return cls(len(lines), _lines_digest(lines), paths, stats, taken, racy)

    def entry_fields(self) -> dict:
        """The ``list`` record stored in a cache entry beside the features."""
        return {"n": self.n, "lines_sha256": self.lines_sha256, "stats": torch.from_numpy(self.stats),
                "taken_ns": self.taken_ns, "racy": {str(i): d for i, d in self.racy.items()}}

    def mismatch(self, entry: Mapping) -> Optional[str]:
        """Why a loaded cache ``entry`` cannot serve this list, or ``None`` if it matches
        exactly: the same number of rows as lines, row i the image of line i, every image
        unchanged since (stat identity; content for the racy ones)."""
        record = entry.get("list") if isinstance(entry, Mapping) else None
        if not isinstance(record, Mapping):
            return "it records no list identity (written by an older version)"
        feats, labels, paths = entry.get("features"), entry.get("labels"), entry.get("image_paths")
        if not isinstance(feats, torch.Tensor) or not isinstance(labels, torch.Tensor) \
                or not isinstance(paths, list):
            return "it lacks features, labels or image paths"
        rows = {int(feats.shape[0]) if feats.ndim else -1, int(labels.shape[0]) if labels.ndim else -1,
                len(paths)}
        if rows != {self.n}:
            return f"it holds {sorted(rows)} rows for a list of {self.n} lines"
        if record.get("n") != self.n or record.get("lines_sha256") != self.lines_sha256:
            return "it was written for other list lines"
        if any(paths) and tuple(paths) != self.paths:
            i = next(i for i, (a, b) in enumerate(zip(paths, self.paths)) if a != b)
            return f"its row {i} is {paths[i]!r}, the list's line {i + 1} is {self.paths[i]!r}"
        stored = record.get("stats")
        if not isinstance(stored, torch.Tensor) or tuple(stored.shape) != self.stats.shape:
            return "its image identities are missing or of another shape"
        changed = np.flatnonzero((stored.numpy() != self.stats).any(axis=1))
        if changed.size:
            return (f"{changed.size} image(s) changed since it was written (size, mtime, ctime or "
                    f"inode), e.g. {self.paths[changed[0]]!r}")
        racy = record.get("racy") or {}
        for i, digest in racy.items():
            if content_digest(self.paths[int(i)]) != digest:
                return (f"image {self.paths[int(i)]!r} changed within its clock tick (same size and "
                        "times, other content)")
        return None
