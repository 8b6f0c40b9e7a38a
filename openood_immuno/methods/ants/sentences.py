"""The sentences of one ENS update: the mined images described by the MLLM (Zhu et al., ANTS,
Sec. 4.2, Eq. 7).

* ``selection='code'`` (the authors' code, default): every mined image is described once; the
  answers, parsed and de-duplicated, are the update's sentences (as many as there are images,
  fewer after failures and duplicates; the bank caps the total).
* ``selection='paper'``, Eq. 7: "If |X_neg| >= M, we randomly select M sentences. Otherwise, we
  repeat the prompting process to generate M negative sentences." Read here as: every mined
  image is described (one round); while fewer than M distinct sentences exist, the images are
  prompted again, round after round, for at most ``ceil(M / n)`` rounds in all (``n`` images:
  the rounds that M answers take if every answer is new), stopping early when a round adds no
  new sentence (a greedy MLLM repeats itself: every backend here decodes greedily, so one
  repeated round ends it). When more than M sentences exist, M are drawn uniformly without
  replacement (``torch.randperm`` on the stream's seeded generator) and kept in their order.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from PIL import Image

from .ens import dedupe
from .params import ENS_SELECTIONS


def select_sentences(sentences: Sequence[str], m: int, generator: torch.Generator) -> list[str]:
    """Eq. 7's random selection: ``m`` of ``sentences`` drawn uniformly without replacement
    (``torch.randperm(n, generator)[:m]``), in their original order; all of them when ``n <= m``."""
    if m <= 0:
        raise ValueError(f"ens_sentences must be >= 1, got {m}")
    if len(sentences) <= m:
        return list(sentences)
    keep = torch.randperm(len(sentences), generator=generator)[:m].sort().values
    return [sentences[i] for i in keep.tolist()]


def ens_sentences(describe: Callable[[], list[Optional[str]]],
                  parse: Callable[[list[Optional[str]]], list[str]], n_images: int,
                  selection: str, m: int, generator: torch.Generator) -> tuple[list[str], int]:
    """``(sentences, rounds)`` of one ENS update.

    ``describe()`` prompts the MLLM once for every mined image (one answer each, ``None`` on
    failure); ``parse(answers)`` turns the answers into sentences. ``selection``: ``code`` (one
    round) or ``paper`` (Eq. 7, above, with M = ``m``).
    """
    if selection not in ENS_SELECTIONS:
        raise ValueError(f"unknown ens_selection {selection!r}: use one of {ENS_SELECTIONS}")
    if n_images == 0:
        return [], 0
    sentences, rounds = dedupe(parse(describe())), 1
    if selection == "code":
        return sentences, rounds
    max_rounds = max(1, math.ceil(m / n_images))
    while len(sentences) < m and rounds < max_rounds:
        more = dedupe(sentences + parse(describe()))
        rounds += 1
        if len(more) == len(sentences):
            break
        sentences = more
    return select_sentences(sentences, m, generator), rounds


def describe_images(backend, images: Sequence[Image.Image], prompts: Sequence[str], max_new_tokens: int,
                    accept: Optional[Callable[[int, str], bool]] = None) -> Callable[[], list[Optional[str]]]:
    """The ``describe`` of :func:`ens_sentences`: one MLLM request per (prompt, image); an answer
    that ``accept(i, text)`` rejects counts as a failed request of the backend."""
    return lambda: backend.generate(list(prompts), list(images), max_new_tokens, task="ENS describe",
                                    accept=accept)
