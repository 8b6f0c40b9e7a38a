"""The ENS bank of ANTS (extended negative space): sentences the MLLM wrote for mined images,
encoded raw (no template), at most ``capacity`` rows. The ANTS code puts a new update in FRONT of the bank and
keeps the LAST ``capacity`` rows, so once full it cuts the newest sentences (``policy='code'``,
the default); ``policy='fifo'`` keeps the newest and drops the oldest.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from .params import ANTSParams


def dedupe(labels: Iterable[str]) -> list[str]:
    """Drop empty and case-insensitive duplicate labels, keep first occurrences in order."""
    seen, out = set(), []
    for label in labels:
        key = label.casefold()
        if label and key not in seen:
            seen.add(key)
            out.append(label)
    return out


class ENSBank:
    """Bounded bank of encoded sentences ``features [N, d]`` with their ``texts``; ``capacity``
    and ``policy`` are ``params.ens_bank_size`` and ``params.ens_bank_policy`` (validated by
    :class:`~.params.ANTSParams`)."""

    def __init__(self, params: ANTSParams):
        self.capacity, self.policy = params.ens_bank_size, params.ens_bank_policy
        self.clear()

    def clear(self) -> None:
        self.texts: list[str] = []
        self.features: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, texts: Sequence[str], features: torch.Tensor) -> None:
        if len(texts) != features.shape[0]:
            raise ValueError(f"{len(texts)} texts for {features.shape[0]} feature rows")
        if not texts:
            return
        old_texts = self.texts
        old = self.features if self.features is not None else features[:0]
        if self.policy == "code":
            texts_all, feats_all = list(texts) + old_texts, torch.cat([features, old.to(features.device)])
        else:
            texts_all, feats_all = old_texts + list(texts), torch.cat([old.to(features.device), features])
        self.texts = texts_all[-self.capacity:]
        self.features = feats_all[-self.capacity:]
