"""Turning a language model's free-text answer into items: one list parser, one description parser.

:func:`parse_list` (antibody look-alikes and contexts, ANTS VSNL class names) accepts:

* a JSON list of strings (also inside a ```json fence or after a preamble);
* numbered (``1.``, ``2)``, ``(3)``, ``4:``, ``5]``, ``6 -``), lettered (``a)``, ``b.``) and
  bulleted (``-``, ``*``, ``+``, ``•``, ``·``, ``–``, ``—``) lines; other lines (preambles such as
  "Here are five:" or "Sure!") are then ignored;
* otherwise one item per line (two lines or more), or one line of comma / semicolon / "and"
  separated items; an ``Answer:`` / ``ASSISTANT:`` prefix is dropped; a single line without
  separators is a sentence, not a list (``[]``);

each item without markdown emphasis, quotes, edge punctuation and a trailing explanation
("Carp - a fish", "Carp: a fish", "Carp (freshwater)"); items with no letter dropped,
case-insensitive duplicates dropped (first kept), ``exclude`` (the class itself) dropped,
at most ``limit``.

:func:`parse_description` (ANTS ENS): the first non-empty line, without an ``Answer:`` /
``ASSISTANT:`` prefix, quotes or trailing punctuation, every mention of the predicted class
removed (the prompt asks the model not to name it; this enforces it), whitespace collapsed;
``None`` when no letter is left.
"""
from __future__ import annotations

import json
import re
from typing import Optional

_PREFIX = re.compile(r"^\s*(answer|assistant|description|caption)\s*:\s*", re.IGNORECASE)
_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):\]\-]|[-*+\u2022\u00b7\u2013\u2014]|\(?[A-Za-z][.)])\s*")
_EXPLANATION = re.compile(r"\s+[-\u2013\u2014]\s+.*$|:\s.*$|:$|\s*\(.*?\)\s*|\s*\(.*$")
_EDGE = " \t.,;:!?\"'`\u201c\u201d\u2018\u2019"
_LETTER = re.compile(r"[^\W\d_]")


def _json_items(text: str) -> Optional[list]:
    """The strings of a JSON list in ``text``, or ``None`` when it holds none."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except ValueError:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return None
    return value


def _clean_item(item: str) -> str:
    item = re.sub(r"[*_`#]+", " ", item)
    item = _EXPLANATION.sub(" ", item)
    return " ".join(item.split()).strip(_EDGE)


def _raw_items(text: str) -> list[str]:
    found = _json_items(text)
    if found is not None:
        return found
    lines = [_PREFIX.sub("", ln) for ln in text.replace("```", "\n").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    marked = [_MARKER.sub("", ln, count=1) for ln in lines if _MARKER.match(ln)]
    marked = [m for m in marked if m.strip()]
    if marked:
        return marked
    raw = [ln for ln in lines if not ln.rstrip().endswith(":")]
    if len(raw) == 1:  # one line: a list only when it has separators, else a sentence
        return re.split(r"[,;]|\band\b", raw[0]) if re.search(r"[,;]", raw[0]) else []
    return raw


def parse_list(text: Optional[str], exclude: str = "", limit: Optional[int] = None) -> list[str]:
    """The items of a list-shaped answer, cleaned (see the module docstring); ``[]`` for none."""
    if not text or not str(text).strip():
        return []
    own = " ".join(exclude.split()).casefold()
    seen, items = set(), []
    for raw in _raw_items(str(text)):
        item = _clean_item(raw)
        key = item.casefold()
        if item and _LETTER.search(item) and key not in seen and (not own or key != own):
            seen.add(key)
            items.append(item)
    return items if limit is None else items[:limit]


def parse_description(text: Optional[str], class_name: str = "") -> Optional[str]:
    """A short image description for the ENS bank, or ``None`` if nothing usable remains."""
    if not text:
        return None
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line)
    if class_name.strip():
        line = re.sub(rf"\b{re.escape(class_name.strip())}(?:e?s)?\b", " ", line, flags=re.IGNORECASE)
    line = " ".join(line.split()).strip(_EDGE + "*")
    return line if _LETTER.search(line) else None
