"""Turning free-form MLLM answers into ANTS labels.

* :func:`parse_description` (ENS): the first non-empty line, without an ``Answer:`` /
  ``ASSISTANT:`` prefix, quotes or trailing punctuation, with every mention of the predicted
  class removed (the prompt asks the model not to name it; this enforces it), whitespace
  collapsed. Text with no letter left is garbage and gives ``None``.
* :func:`parse_similar_names` (VSNL): the numbered (``1.``, ``2)``) or bulleted (``-``, ``*``)
  lines, each cut at a parenthesis, dash or colon that starts an explanation, without the class
  itself, de-duplicated, at most ``limit``. A one-line comma-separated answer is accepted too.
"""
from __future__ import annotations

import re
from typing import Optional

from .ens import dedupe

_PREFIX = re.compile(r"^\s*(answer|assistant|description|caption)\s*:\s*", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(?:\d+\s*[.):\-]|[-*\u2022])\s*(.+?)\s*$")
_EXPLANATION = re.compile(r"\s*(?:\(|\s[-\u2013\u2014]\s|:).*$")
_EDGE = " \t\"'`*.,;:!?"


def _clean(text: str) -> str:
    return " ".join(text.split()).strip(_EDGE)


def parse_description(text: Optional[str], class_name: str = "") -> Optional[str]:
    """A short image description for the ENS bank, or ``None`` if nothing usable remains."""
    if not text:
        return None
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line)
    if class_name.strip():
        line = re.sub(rf"\b{re.escape(class_name.strip())}(?:e?s)?\b", " ", line, flags=re.IGNORECASE)
    line = _clean(line)
    return line if re.search(r"[^\W\d_]", line) else None


def parse_similar_names(text: Optional[str], class_name: str = "", limit: int = 5) -> list[str]:
    """Up to ``limit`` class names from a numbered/bulleted (or comma-separated) answer."""
    if not text:
        return []
    lines = str(text).splitlines()
    items = [m.group(1) for m in map(_ITEM.match, lines) if m]
    if not items:
        first = _PREFIX.sub("", next((ln for ln in lines if ln.strip()), ""))
        items = first.split(",") if "," in first else []
    names = [_clean(_EXPLANATION.sub("", item)) for item in items]
    own = class_name.strip().casefold()
    names = [n for n in names if n and re.search(r"[^\W\d_]", n) and n.casefold() != own]
    return dedupe(names)[:limit]
