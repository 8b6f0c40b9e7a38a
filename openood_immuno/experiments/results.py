"""Result folders keyed by what defines a run, complete or absent, with an honest status.

A *run* is one postprocessor evaluated once. Its folder is
``OUTPUT/<id>_<model>_<weights>/<postprocessor>[_stream]-<key>/``: the prefix is for people,
``key`` is the content key of everything that defines the run (:class:`RunSpec`): the net's
identity (model and weights; a checkpoint file by path and content digest, never by its file
name, size or times alone), the data root and the content key of every image list, the postprocessor
and its fully resolved arguments, the protocol, the seeds, the engine and the scoring batch.

The folder holds ``ood.csv`` (with a ``status`` column), ``scores_<set>.npz``, ``artifacts.npz``
and, written last, ``run.json`` (versions, resolved arguments, ``--pp-arg`` values, seeds,
status, timings, list keys, model identity, the files of the run). :func:`write_run` writes it
all into a hidden temporary folder of the same parent (``.tmp-<folder>.<host>.<pid>.<random>``)
and swaps that into place in one atomic step (:func:`_publish`), so a run folder is complete or
absent, and a rerun of the same content replaces the old folder without a moment in which only
a hidden folder holds it; two identical runs finishing at once both succeed. Different content
gets another key and never overwrites. A crashed or killed run leaves at most a hidden folder,
which ``report`` never reads and the next write in the output folder removes
(:func:`clean_stale`: only when its writer process is gone).

Status (:func:`run_status`, :mod:`openood_immuno.core.status`) is read from the postprocessor's
``status()`` dict and the net (random weights): ok, random-weights, stand-in (e.g. ANTS without
an MLLM by configuration), partial or degraded; ``run.json`` keeps it with the raw dict, and
``ood.csv`` its label on every row.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import re
import shutil
import socket
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from openood_immuno.core.redact import redact_all
from openood_immuno.core.cache import atomic_write_json, content_key
from openood_immuno.core.fileid import content_digest

log = logging.getLogger(__name__)
MANIFEST = "run.json"
RUN_KEY_VERSION = "run-v1"


# ---- what defines a run ----------------------------------------------------------------------
def file_fingerprint(path: str) -> Optional[dict]:
    """``{path, size, digest}`` of a local file (a checkpoint; ``digest`` is its content's,
    :func:`~openood_immuno.core.fileid.content_digest`); ``None`` for anything else."""
    if not path or not os.path.isfile(path):
        return None
    return {"path": os.path.abspath(path), "size": os.path.getsize(path), "digest": content_digest(path)}


def resolved_args(pp) -> dict:
    """A postprocessor's fully resolved arguments (yml defaults + overrides), JSON-ready."""
    args = getattr(pp, "args", {}) or {}
    args = asdict(args) if is_dataclass(args) else dict(args)
    return json.loads(json.dumps(args, sort_keys=True, default=str))


def _prefix_part(text: str) -> str:
    base = os.path.basename(str(text).rstrip("/\\"))
    return os.path.splitext(base)[0] if base.endswith((".json", ".pt", ".pth", ".bin", ".safetensors")) \
        else (base or "none")


def run_prefix(id_name: str, model: str, pretrained: str) -> str:
    """The human-readable parent folder ``<id>_<model>_<weights>`` (not unique by itself)."""
    return f"{id_name}_{_prefix_part(model)}_{_prefix_part(pretrained or 'none')}"


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run; :meth:`key` is the content key of it.

    ``pp_overrides`` (the ``--pp-arg`` values) are recorded but not keyed separately: they are
    part of ``pp_args``, the resolved arguments. ``seeds`` count for the stream protocol and for
    a postprocessor that trains (``trains``: it is refitted once per seed).
    """

    id_name: str
    model: str
    pretrained: str
    net_identity: str
    data_root: str
    lists: Mapping[str, Any]
    postprocessor: str
    pp_args: Mapping[str, Any]
    protocol: str
    seeds: Sequence[int] = (0,)
    engine: str = "builtin"
    aps: bool = False
    score_batch_size: int = 256
    pp_overrides: Mapping[str, Any] = field(default_factory=dict)
    trains: bool = False

    def defining(self) -> dict:
        return {"id": self.id_name, "net": self.net_identity,
                "checkpoint": file_fingerprint(self.pretrained),
                "data_root": os.path.abspath(self.data_root), "lists": self.lists,
                "postprocessor": self.postprocessor, "pp_args": self.pp_args, "aps": self.aps,
                "protocol": self.protocol,
                "seeds": list(self.seeds) if self.protocol == "stream" or self.trains else [],
                "engine": self.engine, "score_batch_size": self.score_batch_size}

    def key(self) -> str:
        return content_key(RUN_KEY_VERSION, self.defining())

    def folder(self, output_dir: str) -> Path:
        leaf = f"{self.postprocessor}{'_stream' if self.protocol == 'stream' else ''}-{self.key()[:12]}"
        return Path(output_dir) / run_prefix(self.id_name, self.model, self.pretrained) / leaf


def versions() -> dict:
    """Versions of Python and of the packages that produce the numbers."""
    out = {"python": platform.python_version()}
    for name, dist in (("openood_immuno", "openood-immuno"), ("torch", "torch"),
                       ("open_clip", "open_clip_torch"), ("numpy", "numpy"),
                       ("scikit_learn", "scikit-learn"), ("openood", "openood")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ---- writing a run ---------------------------------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
_STALE_AFTER_S = 24 * 3600   # a hidden folder older than this is stale whoever made it
_HIDDEN = re.compile(r"^\.(tmp|old)-(?P<leaf>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+$")
_LEGACY = re.compile(r"^\.(tmp|old)-(?P<leaf>.+)-[A-Za-z0-9_]{8}$")   # mkdtemp names of older versions


def _libc_renameat2():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, ImportError):   # not glibc >= 2.28 (macOS, Windows, musl)
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)

    def renameat2(src: Path, dst: Path, flags: int) -> None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(dst))

    return renameat2


_renameat2 = _libc_renameat2()


def _hidden_name(kind: str, leaf: str) -> str:
    """``.tmp-<leaf>.<host>.<pid>.<random>``: who wrote it, so that a stale one can be told apart
    from one a live writer is filling."""
    return f".{kind}-{leaf}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:12]}"


def _fresh_dir(parent: Path, kind: str, leaf: str) -> Path:
    path = parent / _hidden_name(kind, leaf)
    umask = os.umask(0)
    os.umask(umask)
    path.mkdir(mode=0o777 & ~umask)
    return path


@contextmanager
def _folder_lock(parent: Path):
    """An exclusive ``flock`` on the parent folder itself (no lock file is left behind)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: os.replace of a folder onto one fails there
        yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> Optional[Path]:
    """Put the complete folder ``tmp`` at ``final``; the path now holding the previous run there
    (to remove), or ``None``.

    Where the system can (Linux ``renameat2``), the two folders are swapped in one atomic step:
    ``final`` holds a complete run at every instant, and two writers of the same run both
    succeed (each swaps its folder in; the last one stays). Elsewhere (no ``renameat2``, or a
    filesystem without ``RENAME_EXCHANGE``, e.g. NFS) writers of one parent folder take turns
    under a lock, moving the previous run aside to ``.old-*`` for the instant of the rename (a
    crash in that instant leaves it there: the next write in this output folder puts it back).
    """
    if _renameat2 is not None:
        for _ in range(1000):
            try:
                _renameat2(tmp, final, _RENAME_EXCHANGE)
                return tmp                      # tmp's path now holds the previous run
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        break                   # not supported here: the locked way below
                    raise
            try:
                _renameat2(tmp, final, _RENAME_NOREPLACE)
                return None                     # there was no previous run
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    break
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise                       # else another writer came first: swap with it
        else:  # pragma: no cover - 1000 rounds of a folder appearing and vanishing
            raise OSError(errno.EBUSY, "run folder keeps changing under concurrent writers", str(final))
    with _folder_lock(final.parent):
        old = None
        if final.exists():
            old = final.parent / _hidden_name("old", final.name)
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None:
                os.replace(old, final)          # put the previous complete run back
            raise
    return old


def _writer_gone(match: "re.Match", path: Path) -> bool:
    """Its process is gone (same host), or the folder is older than a day (a writer holds it for
    seconds: the results exist before it is made), which covers other hosts, older versions'
    names and a pid taken over by another process."""
    if match.re is _HIDDEN and match["host"] == _HOST:
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            pass
    try:
        return time.time() - path.lstat().st_mtime > _STALE_AFTER_S
    except OSError:
        return False


def clean_stale(output_dir: str) -> list[Path]:
    """Remove the hidden ``.tmp-*`` / ``.old-*`` folders whose writer is gone (a crashed or killed
    run) from every run-prefix folder of ``output_dir``; the paths removed or restored.

    A writer is gone when its process no longer exists (same host), or when the folder is older
    than a day (a writer on another host, a name from an older version, a reused pid); a live
    writer's folder is never touched. An ``.old-*`` folder holding the only
    copy of a complete run (its run folder is missing) is moved back into place, not removed.
    """
    done = []
    hidden = [*Path(output_dir).glob("*/.tmp-*"), *Path(output_dir).glob("*/.old-*")]
    for path in sorted(hidden):
        match = _HIDDEN.match(path.name) or _LEGACY.match(path.name)
        if match is None or not path.is_dir() or not _writer_gone(match, path):
            continue
        final = path.parent / match["leaf"]
        if path.name.startswith(".old-") and not final.exists():
            run = next((p for p in (path, path / match["leaf"]) if (p / MANIFEST).is_file()), None)
            if run is not None:
                with contextlib.suppress(OSError):
                    os.rename(run, final)
                    log.warning("results: the previous run %s was left in %s by an interrupted "
                                "write: moved back", final, path.name)
        shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def id_accuracy(result) -> dict:
    """``{"ACC": ..., "ACC_zeroshot": ...}`` (percent, the columns a result has) of the ID test
    set: the mean over the OOD-set rows (one value in the openood protocol, where every row has
    the same ID predictions; the mean over the streams in the stream protocol)."""
    sets = [v for k, v in result.rows.items() if k not in ("nearood", "farood")]
    return {c: round(sum(v[i] for v in sets) / len(sets), 6)
            for i, c in enumerate(result.columns) if c in ("ACC", "ACC_zeroshot") and sets}


def write_run(output_dir: str, spec: RunSpec, result, timings: Optional[Mapping[str, float]] = None,
              extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``result`` (an ``EvalResult``) as the complete run folder of ``spec``; its path.

    Files go to a hidden temporary folder, ``run.json`` last, which then takes the place of the
    folder (:func:`_publish`: an atomic swap with the previous run of the same key, whose files
    are removed after). Stale hidden folders of crashed runs are cleaned first (:func:`clean_stale`).
    """
    final = spec.folder(output_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(output_dir)
    tmp = _fresh_dir(final.parent, "tmp", final.name)
    old = None
    try:
        files = result.write_files(str(tmp))
        status = result.run_status
        manifest = {"format": "openood-immuno run", "key": spec.key(), "folder": final.name,
                    "id": spec.id_name, "model": spec.model, "pretrained": spec.pretrained,
                    "net_identity": spec.net_identity, "checkpoint": file_fingerprint(spec.pretrained),
                    "data_root": os.path.abspath(spec.data_root), "lists": spec.lists,
                    "postprocessor": spec.postprocessor, "pp_args": spec.pp_args,
                    "pp_overrides": spec.pp_overrides, "aps": spec.aps,
                    "hyperparams": result.hyperparams, "protocol": spec.protocol,
                    "seeds": list(spec.seeds), "trains": spec.trains, "engine": spec.engine,
                    "score_batch_size": spec.score_batch_size,
                    "status": {**status.as_dict(), "postprocessor_status": result.status},
                    "columns": list(result.columns), "id_accuracy": id_accuracy(result),
                    "label": getattr(result, "label", "") or spec.postprocessor,
                    "describe": getattr(result, "describe", {}),
                    "timings": dict(timings or {}), "versions": versions(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files, **(extra or {})}
        atomic_write_json(redact_all(json.loads(json.dumps(manifest, default=str))), tmp / MANIFEST)
        old = _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ---- checks before a run starts --------------------------------------------------------------
def check_writable(path: str, what: str) -> None:
    """Fail now, not after the backbone pass, if ``path`` (created later if absent) is unwritable.

    Nothing is created: the nearest existing folder must accept a new file.
    """
    probe = Path(os.path.abspath(path))
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {path!r} cannot be created: {str(probe)!r} is a file, not a folder; "
                         "pass another folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{what} {path!r} is not writable ({reason} in {str(probe)!r}): pass a "
                         "writable folder") from exc
