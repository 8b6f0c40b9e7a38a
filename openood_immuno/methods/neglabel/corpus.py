"""NegLabel's candidate corpus: WordNet nouns and adjectives (the WordNet 3.0 files of nltk).

The NegLabel repository ships its corpus as text files (``txtfiles/noun.*.txt``, ``adj.*.txt``):
one line per synset, the synset's first lemma with underscores as spaces, and the noun files
``noun.animal`` and ``noun.food`` absent. :func:`wordnet_corpus` rebuilds that list from
WordNet 3.0 (59,123 nouns and 12,354 adjectives with the default exclusions; the repository's
files hold about 58.5k and 13.1k), deduplicated globally with nouns first.
"""
from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import Sequence

from openood_immuno.data.wordnet import require_wordnet, wordnet_root

NEGLABEL_EXCLUDED_LEXNAMES = ("noun.animal", "noun.food")
_MARKER = re.compile(r"\(.*\)$")


def _wordnet_file(name: str):
    """A file of the WordNet database that nltk finds (``NLTK_DATA``, nltk's default folders)."""
    require_wordnet("NegLabel")
    return io.TextIOWrapper(wordnet_root().join(name).open(), encoding="utf-8")


def _synset_first_lemmas(pos_file: str, lexnames: dict[int, str]):
    """``(lexname, first lemma)`` per synset of ``data.<pos_file>``, in file (= offset) order.

    The same lemmas as ``nltk.corpus.wordnet.all_synsets`` yields (adjective markers such as
    ``(a)`` / ``(p)`` removed), read straight from the data file, which is ~20x faster.
    """
    with _wordnet_file(f"data.{pos_file}") as fh:
        for line in fh:
            if line.startswith(" "):          # the licence header
                continue
            fields = line.split(" ", 5)
            yield lexnames[int(fields[1])], _MARKER.sub("", fields[4])


@lru_cache(maxsize=4)
def wordnet_corpus(exclude_lexnames: tuple[str, ...] = NEGLABEL_EXCLUDED_LEXNAMES
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(nouns, adjectives)``: first lemma of every noun / adjective synset, in WordNet order.

    Adjectives include satellites. A word already taken (as a noun, or earlier) is skipped.
    ``exclude_lexnames`` drops synsets of those lexicographer files (e.g. ``noun.animal``).
    """
    with _wordnet_file("lexnames") as fh:
        lexnames = {int(num): name for num, name, _ in (ln.split() for ln in fh if ln.strip())}
    excluded = set(exclude_lexnames)
    seen: set[str] = set()
    pools: dict[str, list[str]] = {"noun": [], "adj": []}
    for pos in ("noun", "adj"):
        for lexname, lemma in _synset_first_lemmas(pos, lexnames):
            word = lemma.replace("_", " ")
            if lexname not in excluded and word not in seen:
                seen.add(word)
                pools[pos].append(word)
    return tuple(pools["noun"]), tuple(pools["adj"])


def evenly_spaced(pool: Sequence[str], k: int) -> list[str]:
    """``k`` items spread evenly over ``pool`` (all of it when ``k`` >= its size)."""
    n = len(pool)
    if k >= n:
        return list(pool)
    return [pool[i * n // k] for i in range(k)]


def limited_corpus(nouns: Sequence[str], adjectives: Sequence[str], limit: int
                   ) -> tuple[list[str], list[str]]:
    """At most ``limit`` candidates in all, split between the pools by their sizes.

    ``limit <= 0`` keeps everything. Used to mine on a small model in seconds (tests, smoke runs).
    """
    if limit <= 0 or limit >= len(nouns) + len(adjectives):
        return list(nouns), list(adjectives)
    k_noun = round(limit * len(nouns) / (len(nouns) + len(adjectives)))
    return evenly_spaced(nouns, k_noun), evenly_spaced(adjectives, limit - k_noun)
