"""Result folders keyed by what defines a run, complete or absent, with an honest status.

A *run* is one postprocessor evaluated once. Its folder is
``OUTPUT/<id>_<model>_<weights>/<postprocessor>[_stream]-<key>/``: the prefix is for people,
``key`` is the content key of everything that defines the run (:class:`RunSpec`): the net's
identity (model and weights; a checkpoint file by path, size and mtime in nanoseconds, never by
its file name alone), the data root and the content key of every image list, the postprocessor
and its fully resolved arguments, the protocol, the seeds, the engine and the scoring batch.

The folder holds ``ood.csv`` (with a ``status`` column), ``scores_<set>.npz``, ``artifacts.npz``
and, written last, ``run.json`` (versions, resolved arguments, ``--pp-arg`` values, seeds,
status, timings, list keys, model identity, the files of the run). :func:`write_run` writes it
all into a hidden temporary folder of the same parent and renames that into place, so a run
folder is complete or absent: an interrupted or failed run leaves at most a hidden
``.tmp-*`` folder without ``run.json``, which ``report`` never reads. A rerun of the same
content replaces the old folder; different content gets another key and never overwrites.

Status (:func:`run_status`, :mod:`openood_immuno.core.status`) is read from the postprocessor's
``status()`` dict and the net (random weights): ok, random-weights, stand-in (e.g. ANTS without
an MLLM by configuration), partial or degraded; ``run.json`` keeps it with the raw dict, and
``ood.csv`` its label on every row.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from openood_immuno.core.cache import atomic_write_json, content_key
from openood_immuno.core.status import (DEGRADED, OK, PARTIAL, RANDOM_WEIGHTS, STAND_IN,  # noqa: F401
                                        RunStatus, run_status)

MANIFEST = "run.json"
RUN_KEY_VERSION = "run-v1"


# ---- what defines a run ----------------------------------------------------------------------
def file_fingerprint(path: str) -> Optional[dict]:
    """``{path, size, mtime_ns}`` of a local file (a checkpoint); ``None`` for anything else."""
    if not path or not os.path.isfile(path):
        return None
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


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
def _fresh_dir(parent: Path, prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)  # mkdtemp creates 0700; give the usual permissions
    return path


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

    Files go to a hidden temporary folder, ``run.json`` last, then the folder is renamed into
    place (an older folder of the same key is moved aside first and removed after).
    """
    final = spec.folder(output_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_dir(final.parent, f".tmp-{final.name}-")
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
                    "timings": dict(timings or {}), "versions": versions(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files, **(extra or {})}
        atomic_write_json(json.loads(json.dumps(manifest, default=str)), tmp / MANIFEST)
        if final.exists():
            old = _fresh_dir(final.parent, f".old-{final.name}-")
            os.replace(final, old / final.name)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists() and (old / final.name).exists():
            os.replace(old / final.name, final)  # put the previous complete run back
        raise
    finally:
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
