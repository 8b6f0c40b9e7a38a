"""Loading a CLIP model and its weights for :func:`~openood_immuno.models.clip_net.build_clip_net`.

The model is an open_clip name or a local open_clip JSON config (checked by
:func:`check_model_config` before open_clip sees it; ours in ``model_configs/`` are registered);
the weights an open_clip tag (refused in seconds when not in the local Hugging Face cache and the
Hub is unreachable), a local checkpoint file, or ``'none'`` for random weights (it warns). Every
way loading can fail is one error naming the fix. The identity of model and weights (a config's
content hash, a checkpoint's digest) is what the net's cache keys derive from.
"""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from openood_immuno.core.cache import content_key
from openood_immuno.core.fileid import content_digest
from openood_immuno.core.seeding import seeded

RANDOM_INIT = ("none", "random")
_MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")


def _register_local_model_configs() -> None:
    import open_clip

    open_clip.add_model_config(str(_MODEL_CONFIG_DIR))


MODEL_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")   # what open_clip needs to register one


def _file_kind(path: str) -> Optional[str]:
    """``'a folder'``, ``'a character device'``, ... for an existing non-regular path, else None."""
    import stat

    mode = os.stat(path).st_mode
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


def check_model_config(path: str) -> dict:
    """A local open_clip JSON model config, checked before open_clip sees it (open_clip skips a
    config without its three keys silently and fails on broken JSON at every later rescan):
    ValueError naming the file and the line, or the missing keys."""
    import json

    if not os.path.exists(path):
        raise FileNotFoundError(f"model config {path!r} does not exist: pass an open_clip model name "
                                "(see open_clip.list_models()) or a JSON config path")
    kind = _file_kind(path)
    if kind is not None:
        raise ValueError(f"model config {path!r} is {kind}, not a file: pass the JSON config file")
    example = _MODEL_CONFIG_DIR / "ImmunoTiny-ViT.json"
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"model config {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                         "pass an open_clip JSON model config") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"model config {path!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}): fix the file (an example: {example})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model config {path!r} holds a JSON {type(config).__name__}, not an object "
                         f"with {list(MODEL_CONFIG_KEYS)} (an example: {example})")
    missing = [k for k in MODEL_CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"model config {path!r} lacks the key(s) {missing}: an open_clip model config "
                         f"needs {list(MODEL_CONFIG_KEYS)} (an example: {example})")
    wrong = [k for k, t in (("embed_dim", int), ("vision_cfg", dict), ("text_cfg", dict))
             if not isinstance(config[k], t) or isinstance(config[k], bool)]
    if wrong:
        raise ValueError(f"model config {path!r}: {', '.join(wrong)} must be "
                         + ", ".join("an integer" if k == "embed_dim" else "an object" for k in wrong)
                         + f" (an example: {example})")
    return config


def _unbuildable_config(path: str, exc: BaseException) -> ValueError:
    return ValueError(f"model config {path!r} could not be built by open_clip ({type(exc).__name__}: "
                      f"{exc}): check the keys of its vision_cfg and text_cfg")


def _model_identity(model: str) -> str:
    """Name of an open_clip model, or the content hash of a local JSON config."""
    if model.endswith(".json"):
        return "config-" + content_key(Path(model).read_text(encoding="utf-8"))
    return model


def is_random_init(pretrained: str | None) -> bool:
    """``pretrained`` asks for random weights (``None``, ``'none'``, ``'random'``)."""
    return pretrained is None or str(pretrained).strip().lower() in RANDOM_INIT


def check_pretrained(pretrained: str | None) -> None:
    """An empty ``pretrained`` (an unset shell variable) is refused, never read as random weights."""
    if pretrained is not None and not str(pretrained).strip():
        raise ValueError(f"pretrained is empty ({pretrained!r}; an unset variable?): pass an open_clip "
                         "tag such as 'openai', a checkpoint path, or 'none' for random weights")


def _weights_identity(pretrained: str | None, seed: int) -> str:
    if is_random_init(pretrained):
        return f"random-init-seed{seed}"
    if os.path.isfile(pretrained):  # by content: a replaced file of the same size and mtime differs
        return f"file:{content_digest(pretrained)}"
    return f"tag:{pretrained}"


@contextmanager
def _quiet_root_log():
    """Mute open_clip's root-logger lines ("No pretrained weights loaded", "Failed to download
    weights"): our warning or error says the same once, with the fix."""
    root = logging.getLogger()
    quiet = logging.Filter("openood_immuno")  # passes only our loggers; open_clip logs to root
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _weights_unavailable(name: str, tag: str) -> Optional[str]:
    """Why open_clip's ``name``/``tag`` weights cannot be had now, decided in seconds: they are not
    in the local Hugging Face cache and the Hub is offline or unreachable
    (:func:`openood_immuno.llm.hub.hub_unavailable`: one probe per process, which then stays
    offline). None when they are cached, the Hub answers, or they come from a plain URL."""
    from open_clip.pretrained import get_pretrained_cfg, has_hf_hub

    from openood_immuno.llm.hub import hub_file_cached, hub_unavailable

    location = get_pretrained_cfg(name, tag).get("hf_hub", "")
    if not (location and has_hf_hub()):
        return None
    repo_id, filename = os.path.split(location)
    filename = filename or "open_clip_pytorch_model.bin"
    stem = filename.rsplit(".", 1)[0]
    candidates = [filename, "open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin"
                  else stem + ".safetensors"]
    if any(hub_file_cached(repo_id, f) for f in candidates):
        return None
    return hub_unavailable(repo_id)


def _create_open_clip(model: str, pretrained: str | None, seed: int):
    """Build (model, preprocess) with a clear error for every way loading can fail."""
    import open_clip

    _register_local_model_configs()
    name = model
    if model.endswith(".json"):
        check_model_config(model)
        open_clip.add_model_config(model)
        name = Path(model).stem
    elif name not in open_clip.list_models():
        raise ValueError(f"unknown CLIP model {model!r}: use one of open_clip.list_models() "
                         f"(e.g. 'ViT-B-16') or the path of a local open_clip JSON model config")

    random_init = is_random_init(pretrained)
    if random_init:
        # one place of warning: Python's default filter shows it once per process and model
        warnings.warn(f"openood-immuno: building {name} with RANDOM weights (pretrained='none'). "
                      "Scores are meaningless; use this only for tests and smoke runs.")
        try:
            with seeded(seed), _quiet_root_log():
                clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
        except (TypeError, ValueError, KeyError) as exc:
            if not model.endswith(".json"):
                raise
            raise _unbuildable_config(model, exc) from exc
        return clip, preprocess

    is_path = (os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
               or os.path.exists(pretrained))
    if is_path and os.path.exists(pretrained) and _file_kind(pretrained) is not None:
        raise ValueError(f"CLIP checkpoint {pretrained!r} is not a file ({_file_kind(pretrained)}): pass "
                         "the checkpoint file itself (e.g. --pretrained /path/to/model.pt)")
    if is_path and not os.path.isfile(pretrained):
        raise FileNotFoundError(f"CLIP checkpoint {pretrained!r} does not exist: pass an existing "
                                f"checkpoint file or an open_clip tag such as 'openai' "
                                f"(open_clip.list_pretrained_tags_by_model({name!r}))")
    if not is_path:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ValueError(f"no pretrained weights {pretrained!r} for {name}: known tags are "
                             f"{tags or 'none'}; or pass a local checkpoint path")
        reason = _weights_unavailable(name, pretrained)
        if reason is not None:
            raise RuntimeError(f"could not obtain pretrained weights {name}/{pretrained}: they are not in "
                               f"the local Hugging Face cache and {reason}. Download them once on a "
                               "machine with internet access (open_clip caches them under "
                               "~/.cache/huggingface) or pass --pretrained /path/to/checkpoint")
    try:
        with _quiet_root_log():
            clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    except Exception as exc:
        if model.endswith(".json") and isinstance(exc, (TypeError, ValueError, KeyError)):
            raise _unbuildable_config(model, exc) from exc
        if is_path:
            raise RuntimeError(f"could not load CLIP checkpoint {pretrained!r} into {name}: {exc}. "
                               f"Check that the file is a complete {name} checkpoint") from exc
        raise RuntimeError(f"could not obtain pretrained weights {name}/{pretrained}: {exc}. "
                           "Download them once on a machine with internet access (open_clip caches "
                           "them under ~/.cache/huggingface) or pass --pretrained /path/to/checkpoint"
                           ) from exc
    return clip, preprocess
