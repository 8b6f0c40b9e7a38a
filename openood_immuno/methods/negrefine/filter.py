"""NegRefine's LLM filter of the initial negatives (``src/neg_filter.py`` of ah-ansari/NegRefine).

1. **Clean-up** (:func:`clean_words`, no LLM): each label keeps only its letters, ``_``, ``-``
   and spaces; a label of fewer than 3 characters left is dropped; repeats are dropped (kept in
   first-seen order: the authors' ``list(set(...))`` has no order). Nouns and conjugated
   adjective phrases are cleaned apart.
2. **Matches** (:func:`top_matches`): for each negative, the ``top_matches`` (10) ID classes of
   highest cosine between the *raw-text* features (no prompt template) of label and class name.
3. **Questions** (:func:`refine`), per negative, in order, with the prompts of ``prompts.txt``
   (the authors' wording):

   * the proper-noun question; an answer starting with "yes" removes the negative;
   * then for each matched class ``c`` in order: a negative equal to ``c`` is removed (no
     question); otherwise the subcategory question ``Is '<neg>' a subcatgeory of '<c>'?``, and
     an answer starting with "yes" removes it (later classes are not asked).

   An answer is "yes" when, lower-cased and without leading whitespace, it starts with ``yes``
   (the authors' ``response.lower().startswith("yes")``). The authors send the system message
   ``You are a helpful assistant. Answering only Yes/No.`` before each question; the project's
   chat backends take one text, so it is sent as the first paragraph of that text.

A failed request (:class:`~openood_immuno.llm.errors.RequestFailed`) is counted and its
question treated as unanswered: the negative is kept, as for a "no". A backend given up
(:class:`~openood_immuno.llm.errors.BackendUnavailable`) keeps every negative not yet asked.
Either way :attr:`Refined.problem` says so. Only a run without failures is cached
(``cache_dir('negrefine')``), keyed by the model, its settings, the questions' inputs and the
prompts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Optional, Sequence

import torch

from openood_immuno.core.cache import cache_dir, content_key
from openood_immuno.llm.errors import BackendUnavailable, RequestFailed
from openood_immuno.methods.neglabel.labelfile import export_labels, import_labels
from openood_immuno.methods.neglabel.mining import NegativeLabels

log = logging.getLogger(__name__)

MIN_CHARS = 3       # a cleaned label shorter than this is dropped (the authors' ``len(w) > 2``)
REASONS = ("proper_noun", "same", "subcategory")


@lru_cache(maxsize=1)
def prompt_texts() -> dict[str, str]:
    """``{section: template}`` of ``prompts.txt`` (each without its trailing newline)."""
    text = resources.files(__package__).joinpath("prompts.txt").read_text(encoding="utf-8")
    out: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("### "):
            name = line[4:].strip()
            out[name] = []
        elif name is not None:
            out[name].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in out.items()}


def question(kind: str, negative: str, positive: str = "") -> str:
    """The text sent for one question: the system message, a blank line, the question."""
    t = prompt_texts()
    return t["system"] + "\n\n" + t[kind].format(negative=negative, positive=positive)


def is_yes(answer: str) -> bool:
    """The authors' parsing: the answer starts with "yes" (case-insensitive)."""
    return answer.lstrip().lower().startswith("yes")


def clean_words(words: Sequence[str]) -> list[str]:
    """Step 1 of the module docstring."""
    out = ("".join(c for c in w if c.isalpha() or c in "_- ") for w in words)
    return list(dict.fromkeys(w for w in out if len(w) >= MIN_CHARS))


def top_matches(neg_features: torch.Tensor, id_features: torch.Tensor, n: int) -> list[list[int]]:
    """Indices of the ``min(n, C)`` ID classes of highest cosine, per negative, best first."""
    k = min(n, id_features.shape[0])
    return torch.topk(neg_features.float() @ id_features.float().T, k, dim=1).indices.tolist()


@dataclass
class Refined:
    """The kept labels of one filter run, what was removed and why, and how the requests went."""

    labels: NegativeLabels
    removed: dict = field(default_factory=lambda: {r: 0 for r in REASONS})
    requests: int = 0
    failed: int = 0
    gave_up: Optional[str] = None

    @property
    def problem(self) -> Optional[str]:
        """``None`` when every question was answered, else what went wrong."""
        if self.gave_up:
            return (f"LLM given up after {self.requests} requests ({self.gave_up}): the negatives "
                    "not yet asked are kept unfiltered")
        if self.failed:
            return f"{self.failed} of {self.requests} LLM requests failed (their negatives kept)"
        return None


def _ask(backend, prompt: str, seed: int, out: Refined) -> Optional[bool]:
    out.requests += 1
    try:
        return is_yes(backend.complete(prompt, seed))
    except RequestFailed as exc:
        out.failed += 1
        log.warning("NegRefine: LLM request failed (%s)", exc)
        return None


def _verdict(backend, negative: str, matches: Sequence[str], seed: int, out: Refined) -> Optional[str]:
    """Why ``negative`` is removed (one of :data:`REASONS`), or ``None`` when it is kept."""
    if _ask(backend, question("proper_noun", negative), seed, out):
        return "proper_noun"
    for positive in matches:
        if negative == positive:
            return "same"
        if _ask(backend, question("subcategory", negative, positive), seed, out):
            return "subcategory"
    return None


def refine(backend, nouns: Sequence[str], adjectives: Sequence[str],
           matches: dict[str, Sequence[str]], seed: int = 0) -> Refined:
    """Step 3 over cleaned ``nouns`` and ``adjectives`` (``matches``: label -> matched ID classes)."""
    out = Refined(NegativeLabels([], []))
    kept = (out.labels.nouns, out.labels.adjectives)
    pending = [(w, 0) for w in nouns] + [(w, 1) for w in adjectives]
    for i, (word, part) in enumerate(pending):
        try:
            reason = _verdict(backend, word, matches[word], seed, out)
        except BackendUnavailable as exc:
            out.failed += 1
            out.gave_up = str(exc)
            log.error("NegRefine: %s", exc)
            for rest, rest_part in pending[i:]:
                kept[rest_part].append(rest)
            break
        if reason is None:
            kept[part].append(word)
        else:
            out.removed[reason] += 1
    return out


def cache_key(model: str, settings: dict, nouns: Sequence[str], adjectives: Sequence[str],
              matches: dict[str, Sequence[str]]) -> str:
    return content_key("negrefine-v1", model, settings, list(nouns), list(adjectives),
                       {k: list(v) for k, v in matches.items()}, prompt_texts())


def cached_refined(key: str) -> Optional[NegativeLabels]:
    path = cache_dir("negrefine") / f"{key}.txt"
    if not path.is_file():
        return None
    try:
        labels = import_labels(path)
    except ValueError:          # damaged or cut short: ask again
        labels = None
    if labels is not None and labels.meta.get("n_labels") != str(len(labels)):
        labels = None
    if labels is None:
        path.unlink(missing_ok=True)
    return labels


def store_refined(key: str, refined: Refined, meta: dict) -> None:
    refined.labels.meta = {**meta, **{f"removed_{k}": v for k, v in refined.removed.items()},
                           "n_labels": len(refined.labels)}
    export_labels(refined.labels, cache_dir("negrefine") / f"{key}.txt")
