"""Any exception -> the one line ``openood-immuno: error: ...`` that names the file or option and the fix.

:func:`one_line` is the whole rule: the exception's own message when it has one (a DataLoader
worker's error unwrapped to the original message), completed by what the user can do about
its type (permissions, read-only filesystems, damaged archives, oversized images, ...), and a
useful text where the exception brought none.
"""
from __future__ import annotations

import errno
import os
import re
import traceback
import zipfile

from openood_immuno.core.redact import redact

from .args import UsageError

_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\s*Original Traceback \(most recent "
                     r"call last\):\n", re.S)
_PATH_LOCALS = ("path", "file", "filename", "fname", "f", "fp", "out", "list_path")


def worker_message(message: str) -> str | None:
    """The original ``Type: message`` of an error re-raised from a DataLoader worker, or None.

    PyTorch re-raises a worker's exception with the worker's whole traceback as its message;
    the original message is what follows the last frame of that traceback (of the last
    exception, when the worker's exceptions were chained).
    """
    match = _WORKER.search(message)
    if not match:
        return None
    text = message[match.end():].rpartition("Traceback (most recent call last):\n")[2]
    lines = text.splitlines()
    tail = [i for i, line in enumerate(lines) if line and not line.startswith(" ")]
    return "\n".join(lines[tail[0]:]).strip() if tail else text.strip()


def _strip_type(text: str) -> str:
    """``'RuntimeError: image ...'`` -> ``'image ...'`` (module-qualified names too)."""
    head, sep, rest = text.partition(": ")
    return rest if sep and re.fullmatch(r"[\w.]+", head) and head.split(".")[-1][:1].isupper() else text


def _path_in_traceback(exc: BaseException) -> str | None:
    """The innermost local naming an existing path (``path``, ``file``...) where ``exc`` arose."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    for frame, _ in reversed(frames):
        for name in _PATH_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and str(value) and os.path.exists(value):
                return str(value)
    return None


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" in {os.path.basename(last.filename)}:{last.lineno} ({last.name})"


def _os_error(exc: OSError) -> str:
    target = exc.filename if exc.filename is not None else _path_in_traceback(exc)
    what = f"{target!r}: " if target is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.EROFS:
        return (f"{what}read-only filesystem: write elsewhere (--output-dir, --out, or the cache "
                "folder OPENOOD_IMMUNO_CACHE)")
    if isinstance(exc, PermissionError):
        return (f"{what}{reason}: grant access to it or choose another path (--output-dir, --out, "
                "--data-root, OPENOOD_IMMUNO_CACHE)")
    if isinstance(exc, NotADirectoryError):
        return f"{what}{reason}: a part of this path is a file, not a folder; fix the path"
    if isinstance(exc, IsADirectoryError):
        return f"{what}{reason}: a folder stands where a file is expected; pass a file path"
    if isinstance(exc, FileExistsError):
        return f"{what}{reason}: remove it or choose another path"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        if type(exc).__name__ == "NoSpaceError":   # its message names the folder and the file
            what = ""
        return (f"{what}{reason}: free some space or write elsewhere (--output-dir, --out, or the cache "
                "folder OPENOOD_IMMUNO_CACHE)")
    return f"{what}{reason}"


def _bomb(message: str, path: str | None) -> str:
    if path:
        return (f"image {path!r} is too large to decode safely ({message}): shrink it, remove its line "
                "from the list, or raise PIL.Image.MAX_IMAGE_PIXELS")
    return f"an image is too large to decode safely ({message}): shrink it or remove its line from the list"


def _explain(exc: BaseException, message: str) -> str:
    """``message`` of ``exc`` (raised in this process) with what to do about its type."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and (
            exc.errno is not None or exc.filename is not None or not message):
        return _os_error(exc)
    if isinstance(exc, zipfile.BadZipFile):
        path = _path_in_traceback(exc)
        return (f"{path!r}: " if path else "") + (f"damaged archive ({message or 'not a zip file'}), e.g. "
                                                  "a file cut short by an interrupted run: delete it and run again")
    if type(exc).__name__ == "DecompressionBombError":
        return _bomb(message, _path_in_traceback(exc))
    if not message.strip():
        return (f"{type(exc).__name__} without a message{_where(exc)}: run again with --verbose for the "
                "traceback and report it")
    if not isinstance(exc, (UsageError, ValueError, KeyError, LookupError, FileNotFoundError, ImportError,
                            RuntimeError)):
        return f"{type(exc).__name__}: {message}{_where(exc)}"
    return message


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` for ``openood-immuno: error: <message>`` (a single line)."""
    message = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    unwrapped = worker_message(message)
    if unwrapped is None:
        message = _explain(exc, message)
    else:
        message = _strip_type(unwrapped)
        if type(exc).__name__ == "DecompressionBombError":
            message = _bomb(message, None)
        message += " (raised in a DataLoader worker; --num-workers 0 runs it in-process and names the file)"
    return redact(" ".join(part.strip() for part in message.splitlines() if part.strip()))
