"""Screening an LLM's candidate antibodies for one class: keep the plausible, reject garbage.

The answer itself is parsed by :func:`openood_immuno.llm.parsing.parse_list`;
:func:`screen_candidates` keeps only plausible antibodies for a class (with a reason for each
rejection), :func:`mentions` is the whole-word test it (and the WordNet generator) uses.
"""
from __future__ import annotations

import re
from typing import Iterable

from .antibodies import normalise_text

MAX_WORDS = {"near_ood": 6, "contextual": 16}
_ALLOWED = re.compile(r"^[\w\s'\-,.&/]+$")


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
