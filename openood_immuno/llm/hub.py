"""Where the weights of an ``hf:NAME_OR_PATH`` model come from, decided in seconds.

1. ``NAME_OR_PATH`` is an existing folder: loaded from it, the Hub is never contacted.
2. A path that does not exist (absolute, ``./``, ``~``, or not a valid Hub name): one error.
3. ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set: the Hugging Face cache only
   (``local_files_only``); not cached -> one error, no network.
4. Otherwise the Hub (``$HF_ENDPOINT``, default https://huggingface.co) is probed with a
   :data:`PROBE_TIMEOUT_S` deadline, once per process and endpoint (:func:`hub_unavailable`):
   reachable -> a normal load (downloads what is missing); unreachable -> the cache only, and
   one error when the model is not cached. An unreachable Hub also switches the process to
   offline mode (``huggingface_hub.constants.HF_HUB_OFFLINE``), so no later download of any
   library (open_clip's weights, transformers) sits through the Hub client's retries.

So an offline machine fails within a few seconds with one line, instead of the Hub client's
minutes of "Retrying in ..." per model. :func:`hub_file_cached` tells whether one file of a Hub
repository is in the local cache (open_clip's weights, :mod:`openood_immuno.models.loading`).
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
_PROBED: dict[str, Optional[str]] = {}   # endpoint -> why it is unreachable (None: it answered)


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


def hub_unavailable(name: str) -> Optional[str]:
    """Why the Hub cannot serve ``name`` in this process (``'HF_HUB_OFFLINE is set (offline)'``,
    ``'the Hub (URL) is unreachable (why)'``), or None when it answers.

    The Hub is probed once per process and endpoint (:func:`hub_problem`, at most
    :data:`PROBE_TIMEOUT_S`); when it does not answer, the process goes offline
    (:func:`go_offline`) and every later call returns the same reason at once.
    """
    var = offline_variable()
    if var:
        return f"{var} is set (offline)"
    endpoint = hub_endpoint()
    if endpoint not in _PROBED:
        _PROBED[endpoint] = hub_problem(name)
        if _PROBED[endpoint] is not None:
            go_offline(f"the Hub ({endpoint}) is unreachable ({_PROBED[endpoint]})")
    problem = _PROBED[endpoint]
    return None if problem is None else f"the Hub ({endpoint}) is unreachable ({problem})"


def go_offline(reason: str) -> None:
    """Put ``huggingface_hub`` (and the libraries that ask it: transformers, open_clip) in offline
    mode for the rest of the process: downloads fail at once instead of retrying."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        log.debug("%s: Hugging Face downloads are off for the rest of this process (local cache only)",
                 reason)
        constants.HF_HUB_OFFLINE = True


def reset_hub_state() -> None:
    """Forget the probes and leave offline mode as the environment sets it (tests)."""
    from huggingface_hub import constants

    _PROBED.clear()
    constants.HF_HUB_OFFLINE = offline_variable() is not None


def hub_file_cached(repo_id: str, filename: str) -> bool:
    """Whether ``filename`` of Hub repository ``repo_id`` is in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # an invalid repo id or a damaged cache: not usable offline
        return False


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
    if cached and offline_variable():
        return HFSource(name, True)
    reason = hub_unavailable(name)
    if reason is None:
        return HFSource(name, False)
    if cached:
        log.info("%s: loading %s from the local cache", reason, name)
        return HFSource(name, True)
    raise BackendUnavailable(f"{name!r} is not in the local Hugging Face cache and {reason}: {fix}")
