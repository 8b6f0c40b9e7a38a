"""Where the weights of an ``hf:NAME_OR_PATH`` model come from, decided in seconds.

1. ``NAME_OR_PATH`` is an existing folder: loaded from it, the Hub is never contacted.
2. A path that does not exist (absolute, ``./``, ``~``, or not a valid Hub name): one error.
3. ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set: the Hugging Face cache only
   (``local_files_only``); not cached -> one error, no network.
4. Otherwise the Hub (``$HF_ENDPOINT``, default https://huggingface.co) is probed once with a
   :data:`PROBE_TIMEOUT_S` deadline: reachable -> a normal load (downloads what is missing);
   unreachable -> the cache only, and one error when the model is not cached.

So an offline machine fails within a few seconds with one line, instead of the Hub client's
minutes of "Retrying in ..." per model.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from .errors import BackendUnavailable
from .http import EndpointError, request_json

log = logging.getLogger(__name__)

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HFSource:
    """What to pass to ``from_pretrained``: ``source`` and ``local_files_only``."""

    source: str
    local_files_only: bool


def offline_variable() -> Optional[str]:
    """The name of the offline variable that is set (``1``/``true``/``yes``/``on``), if any."""
    for var in OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_problem(name: str, timeout_s: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """``None`` when the Hub answers (any HTTP status), else why it cannot be reached."""
    try:
        request_json(f"{hub_endpoint()}/api/models/{quote(name, safe='/')}", timeout_s=timeout_s)
    except EndpointError as exc:
        if exc.kind in ("http", "bad_answer"):
            return None
        return str(exc)
    return None


def cached_snapshot(name: str) -> Optional[str]:
    """The local snapshot folder of Hub model ``name``, or ``None`` (never touches the network)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, or a damaged cache entry: not usable offline
        return None


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def locate(name: str) -> HFSource:
    """Decide where ``name``'s weights come from; :class:`BackendUnavailable` with the fix if nowhere."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return HFSource(str(folder), True)
    if not _is_repo_id(name):
        raise BackendUnavailable(f"no such local folder {name!r}: pass a local folder holding the "
                                 "model's config.json and weights, or a Hugging Face Hub name")
    fix = (f"download it once where there is internet (huggingface-cli download {name}) and pass "
           "its local folder as hf:/path/to/folder")
    cached = cached_snapshot(name)
    var = offline_variable()
    if var:
        if cached:
            return HFSource(name, True)
        raise BackendUnavailable(f"{name!r} is not in the local Hugging Face cache and {var} is set "
                                 f"(offline): {fix}")
    problem = hub_problem(name)
    if problem is None:
        return HFSource(name, False)
    if cached:
        log.info("Hugging Face Hub unreachable (%s): loading %s from the local cache", problem, name)
        return HFSource(name, True)
    raise BackendUnavailable(f"{name!r} is not in the local Hugging Face cache and the Hub "
                             f"({hub_endpoint()}) is unreachable ({problem}): {fix}")
