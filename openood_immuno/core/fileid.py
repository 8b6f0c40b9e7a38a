"""File identities that a replacement of the file changes.

Two rules, after git (``Documentation/technical/racy-git.txt``):

* **Stat identity** (images, many small files): ``(size, mtime_ns, ctime_ns, inode)``, git's
  index fields. Size and mtime alone miss a file replaced by one of the same size whose mtime
  was put back (``cp new old; touch -r backup old``, ``rsync -t``, ``tar x``): the kernel sets
  ``ctime`` to the time of every change and ``touch`` cannot set it back, and a replacement by
  rename (``mv``) brings another inode. **Racy timestamps**: a file changed twice within one tick
  of the filesystem's clock keeps its stat identity, so one whose mtime is not older than the
  moment its identity was taken (:func:`is_racy`, with :data:`RACY_MARGIN_NS` for coarse
  clocks) cannot be trusted by stat; its content digest is stored beside the stat identity and
  checked again on use.
* **Content digest** (checkpoints): BLAKE3 of the bytes, streamed (:func:`content_digest`):
  it changes with any replacement, whatever the tools did to the times. 600 MiB take 0.6 s
  (docs/benchmark.md), once per process and file version (memoised by stat identity).
"""
from __future__ import annotations

import os
import time
from typing import Iterable

import numpy as np

#: timestamps are as fine as the filesystem's clock: a kernel tick (ms) on ext4/xfs, 2 s on FAT;
#: a file whose mtime is within this much of (or after) the moment its identity was taken is racy
RACY_MARGIN_NS = 2_000_000_000
DIGEST = "blake3"
_CHUNK = 1 << 20
_MEMO: dict[tuple, str] = {}


def stat_identity(path: str) -> tuple[int, int, int, int]:
    """``(size, mtime_ns, ctime_ns, inode)`` of ``path``; ``(-1, -1, -1, -1)`` if it cannot be
    read (whoever opens it says why)."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def stat_identities(paths: Iterable[str]) -> np.ndarray:
    """:func:`stat_identity` of each path, as an int64 array ``[N, 4]``."""
    return np.array([stat_identity(p) for p in paths], dtype=np.int64).reshape(-1, 4)


def now_ns() -> int:
    """The moment identities are taken (compare with :func:`is_racy`)."""
    return time.time_ns()


def is_racy(mtime_ns: np.ndarray, taken_ns: int) -> np.ndarray:
    """Which files' stat identities cannot be trusted: mtime not older than ``taken_ns`` (less
    :data:`RACY_MARGIN_NS`), so a change within the same clock tick would not show."""
    return np.asarray(mtime_ns) >= taken_ns - RACY_MARGIN_NS


def content_digest(path: str) -> str:
    """``blake3:<hex>`` of the file's bytes, streamed; memoised per process by path and
    :func:`stat_identity` (a replaced file has another)."""
    memo_key = (os.path.abspath(path), stat_identity(path))
    if memo_key in _MEMO and not is_racy(np.array([memo_key[1][1]]), now_ns())[0]:
        return _MEMO[memo_key]
    try:
        from blake3 import blake3
    except ImportError as exc:  # a dependency of the package (setup.cfg)
        raise ImportError("the 'blake3' package identifies checkpoint files by content: "
                          "pip install blake3") from exc
    digest = blake3()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    _MEMO[memo_key] = out = f"{DIGEST}:{digest.hexdigest()}"
    return out
