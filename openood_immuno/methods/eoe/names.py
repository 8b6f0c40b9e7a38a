"""Envisioned outlier names: the authors' answer parsing and clean-up, and the names file.

Parsing (``stringtolist``): the lines of an answer that start with ``'- '``, without it.
Clean-up (``load_llm_classes``, and ``remove_overlap_class`` for ``near``):

1. lower-case every name and drop repeats (kept in first-seen order; the authors' ``set`` has
   no order, and order does not change the score);
2. drop a name equal to a lower-cased ID class name;
3. ``near`` only: drop a name sharing any whitespace-separated word with any ID class name.

Names file: UTF-8, one name per line; blank lines and lines starting with ``#`` are skipped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from openood_immuno.core.cache import atomic_write_text
from openood_immuno.core.textfiles import read_utf8_file

HEADER = "# openood-immuno EOE envisioned outlier names v1"


def parse_answer(text: str) -> list[str]:
    """The ``'- name'`` lines of an LLM answer (authors' ``stringtolist``)."""
    return [line[2:] for line in (text or "").split("\n") if line.startswith("- ")]


def clean_names(names: Iterable[str], class_names: Sequence[str], task: str) -> list[str]:
    """Steps 1-3 of the module docstring."""
    id_lower = {c.lower() for c in class_names}
    out = [n for n in dict.fromkeys(n.lower() for n in names) if n not in id_lower]
    if task == "near":
        id_words = {w for c in class_names for w in c.split()}
        out = [n for n in out if not any(w in id_words for w in n.split())]
    return out


def write_names(names: Sequence[str], path: str | os.PathLike, meta: dict | None = None) -> Path:
    lines = [HEADER] + [f"# {k}: {v}" for k, v in (meta or {}).items()] + list(names)
    return atomic_write_text("\n".join(lines) + "\n", path)


def read_names(path: str | os.PathLike) -> list[str]:
    """The names of a names file; one clear error for a missing, unreadable or empty file."""
    text = read_utf8_file(Path(path), "EOE outlier names file",
                          "write one envisioned outlier class name per line")
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not names:
        raise ValueError(f"EOE outlier names file {str(path)!r} holds no names: write one name per line")
    return names
