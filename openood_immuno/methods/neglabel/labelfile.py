"""The mined negative label list as a text file (export, import) and its on-disk cache.

Format (UTF-8)::

    # openood-immuno negative labels v1
    # key: value            (provenance, ignored on import)
    noun<TAB>word
    adj<TAB>word

One label per line, nouns and adjectives in ascending ``d_j``. The cache stores exactly this
file under ``cache_dir('neglabel')``, keyed by the CLIP model identity, the ID class names,
the candidate corpus and the mining parameters.
"""
from __future__ import annotations

import os
from pathlib import Path

from openood_immuno.core.cache import atomic_write_text, cache_dir, content_key
from openood_immuno.core.textfiles import read_utf8_file
from .mining import NegativeLabels

HEADER = "# openood-immuno negative labels v1"
_KINDS = {"noun": "nouns", "adj": "adjectives"}


def format_labels(labels: NegativeLabels) -> str:
    lines = [HEADER] + [f"# {k}: {v}" for k, v in labels.meta.items()]
    lines += [f"noun\t{w}" for w in labels.nouns] + [f"adj\t{w}" for w in labels.adjectives]
    return "\n".join(lines) + "\n"


def export_labels(labels: NegativeLabels, path: str | os.PathLike) -> Path:
    """Write ``labels`` to ``path`` (atomically)."""
    return atomic_write_text(format_labels(labels), path)


def import_labels(path: str | os.PathLike) -> NegativeLabels:
    """Read a file written by :func:`export_labels`; errors name the offending line (or the
    file: missing, a directory, not UTF-8)."""
    path = Path(path)
    text = read_utf8_file(path, "negative label file", "export one with `openood-immuno neglabels --out FILE`")
    out = NegativeLabels([], [])
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and lineno > 1:
                out.meta[key.strip()] = value.strip()
            continue
        if not line.strip():
            continue
        kind, sep, word = line.partition("\t")
        if not sep or kind not in _KINDS or not word.strip():
            raise ValueError(f"{path}:{lineno}: expected 'noun<TAB>word' or 'adj<TAB>word', "
                             f"got {line!r}")
        getattr(out, _KINDS[kind]).append(word.strip())
    if not len(out):
        raise ValueError(f"negative label file {str(path)!r} holds no labels")
    return out


def cache_key(net_identity: str, class_names, nouns, adjectives, params: dict) -> str:
    return content_key("neglabel-v1", net_identity, list(class_names), list(nouns),
                       list(adjectives), params)


def cached_labels(key: str) -> NegativeLabels | None:
    path = cache_dir("neglabel") / f"{key}.txt"
    if not path.is_file():
        return None
    try:
        labels = import_labels(path)
    except ValueError:  # damaged cache file: mine again
        labels = None
    if labels is not None and labels.meta.get("n_labels", str(len(labels))) != str(len(labels)):
        labels = None  # cut short at a line end: fewer labels than were mined
    if labels is None:
        path.unlink(missing_ok=True)
    return labels


def store_labels(key: str, labels: NegativeLabels) -> Path:
    return export_labels(labels, cache_dir("neglabel") / f"{key}.txt")
