"""Turning an LLM's free-text answer into candidate antibodies, and rejecting garbage.

:func:`parse_list` reads numbered (``1.``, ``2)``, ``(3)``), lettered (``a)``) and bulleted
(``-``, ``*``, ``•``) lists, markdown emphasis, preambles ("Here are five...:"), one-line
comma-separated answers and explanations after the item ("Carp - a fish", "Carp: ...",
"Carp (freshwater)"). :func:`screen_candidates` keeps only plausible antibodies for a class.
"""
from __future__ import annotations

import re
from typing import Iterable

from .antibodies import normalise_text

MAX_WORDS = {"near_ood": 6, "contextual": 16}
_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):\]]|[-*+\u2022\u00b7\u2013\u2014]|\(?[A-Za-z][.)])\s*")
_EXPLANATION = re.compile(r"\s+[-\u2013\u2014]\s+.*$|:\s.*$|\s*\(.*?\)\s*")
_ALLOWED = re.compile(r"^[\w\s'\-,.&/]+$")


def _clean_item(item: str) -> str:
    item = re.sub(r"[*_`#]+", " ", item)
    item = _EXPLANATION.sub(" ", item)
    item = re.sub(r"\s+", " ", item).strip()
    return item.strip(" .,;:!?\"'\u201c\u201d\u2018\u2019")


def parse_list(text: str | None) -> list[str]:
    """Items of a list-shaped answer, cleaned; ``[]`` for an empty answer."""
    if not text or not text.strip():
        return []
    lines = [ln for ln in text.replace("```", "\n").splitlines() if ln.strip()]
    marked = [_MARKER.sub("", ln, count=1) for ln in lines if _MARKER.match(ln) and _MARKER.sub("", ln, count=1).strip()]
    if marked:
        raw = marked
    else:
        raw = [ln for ln in lines if not ln.rstrip().endswith(":")]
        if len(raw) == 1 and re.search(r"[,;]", raw[0]):
            raw = re.split(r"[,;]|\band\b", raw[0])
    items = [_clean_item(r) for r in raw]
    return [i for i in items if i]


def mentions(text: str, word: str) -> bool:
    """Whether normalised ``text`` contains ``word`` as whole word(s), plural allowed."""
    return re.search(rf"\b{re.escape(word)}(?:e?s)?\b", text) is not None


def screen_candidates(items: Iterable[str], class_name: str, kind: str) -> tuple[list[str], list[str]]:
    """``(kept, rejected-with-reason)`` for candidate ``kind`` antibodies of ``class_name``.

    Kept items have 1..MAX_WORDS[kind] words, mostly letters, no odd characters, no
    repeated-word babble, are not the class name, and: ``near_ood`` items do not contain
    the class name (they name something else); ``contextual`` items mention the class's
    head word (its last word), since they describe the class in an anomalous context.
    """
    if kind not in MAX_WORDS:
        raise ValueError(f"kind must be one of {sorted(MAX_WORDS)}, got {kind!r}")
    cls = normalise_text(class_name)
    head = cls.split(" ")[-1]
    kept, rejected = [], []
    for item in items:
        norm = normalise_text(item)
        words = norm.split()
        letters = sum(ch.isalpha() for ch in norm)
        reason = None
        if not words or letters < 3:
            reason = "too short"
        elif not _ALLOWED.match(item) or letters < 0.7 * len(norm.replace(" ", "")):
            reason = "odd characters"
        elif len(words) > MAX_WORDS[kind]:
            reason = f"more than {MAX_WORDS[kind]} words"
        elif len(words) >= 4 and len(set(words)) <= len(words) // 2:
            reason = "repeated words"
        elif norm == cls:
            reason = "is the class itself"
        elif kind == "near_ood" and mentions(norm, cls):
            reason = "contains the class name"
        elif kind == "contextual" and not mentions(norm, head):
            reason = f"does not mention {head!r}"
        if reason:
            rejected.append(f"{item[:60]!r}: {reason}")
        else:
            kept.append(item)
    return kept, rejected
