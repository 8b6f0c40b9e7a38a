"""On-disk caches: one place for the cache folder, content keys and atomic writes.

Every cache file is written to a temporary file in the same folder and moved into
place with :func:`os.replace`, which is atomic on POSIX and Windows. A reader
therefore sees either the old complete file or the new complete file, never a
half-written one; an interrupted write leaves only a ``.tmp-*`` file that no reader
opens. A write that fails because the disk is full (``ENOSPC``, ``EDQUOT``, or torch's own
"file write failed" with the disk out of space) raises :class:`NoSpaceError` naming the file, not
a library's internal message.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

CACHE_ENV = "OPENOOD_IMMUNO_CACHE"


def cache_root() -> Path:
    """Cache root, ``$OPENOOD_IMMUNO_CACHE`` or ``~/.cache/openood_immuno`` (not created here)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "openood_immuno")


def cache_dir(kind: str = "") -> Path:
    """Cache root (:func:`cache_root`), or a sub-folder, created if absent."""
    root = cache_root()
    path = root / kind if kind else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_key(*parts: Any) -> str:
    """A stable 20-hex-digit key for JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE_BYTES = 64 << 20   # below this, a library's failed write is taken for a full disk


class NoSpaceError(OSError):
    """A write that failed because its disk (or quota) is full; the message names the file."""


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _no_space(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` means the disk is full: ENOSPC/EDQUOT, or a library's write error
    (torch: "file write failed", "unexpected pos") while the disk has almost no space left."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("write failed", "unexpected pos")):
        free = _free_bytes(folder)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically move ``tmp_path`` onto ``path``.

    A full disk raises :class:`NoSpaceError` (errno ENOSPC) ``no space left on the device of
    '<folder>' while writing '<path>' (<free> MB free)``; the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, Exception) and _no_space(exc, path.parent):
            free = _free_bytes(path.parent)
            left = f" ({free / 2**20:.0f} MB free)" if free is not None else ""
            raise NoSpaceError(errno.ENOSPC, f"no space left on the device of {str(path.parent)!r} while "
                                             f"writing {str(path)!r}{left}") from exc
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a partial file at ``path``."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write text atomically (UTF-8)."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, _write)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (UTF-8, indented)."""
    return atomic_write_text(json.dumps(obj, indent=1, ensure_ascii=False), path)


def torch_load_cached(path: str | os.PathLike) -> Any | None:
    """Load a cache file written by :func:`atomic_torch_save`; ``None`` if absent.

    A file that exists but cannot be read (written by an incompatible version,
    damaged on disk) is removed and treated as absent, so it is recomputed.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # damaged cache: recompute rather than crash
        path.unlink(missing_ok=True)
        return None
