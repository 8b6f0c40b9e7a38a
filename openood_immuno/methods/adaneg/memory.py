"""AdaNeg's feature memory: per slot (ID class or negative label) its text feature and up to
``capacity`` cached test features, kept by :func:`openood_immuno.scores.adaneg.keep_lowest`.

Held in float32 on the features' device: ``entries [S, 1 + capacity, d]`` (row 0 = the text
feature, empty rows zero), ``entropy``/``arrival [S, capacity]`` (the write priority), and what
scoring reads, updated for the written slots only: ``sums [S, d]`` (task-adaptive proxies) and
``gram [S, 1 + capacity, 1 + capacity]`` (sample-adaptive proxies).
"""
from __future__ import annotations

import torch

from openood_immuno.scores.adaneg import keep_lowest

EMPTY_ARRIVAL = torch.iinfo(torch.int64).max


class FeatureMemory:
    """The memory of one stream (``text`` ``[S, d]``: the slots' unit text features)."""

    def __init__(self, text: torch.Tensor, capacity: int):
        self.capacity = capacity
        text = text.float()
        s_count, dim = text.shape
        self.entries = torch.zeros(s_count, 1 + capacity, dim, device=text.device)
        self.entries[:, 0] = text
        self.entropy = torch.full((s_count, capacity), float("inf"), device=text.device)
        self.arrival = torch.full((s_count, capacity), EMPTY_ARRIVAL, dtype=torch.int64, device=text.device)
        self.sums = torch.zeros(s_count, dim, device=text.device)
        self.gram = torch.zeros(s_count, 1 + capacity, 1 + capacity, device=text.device)
        self.gram[:, 0, 0] = (text * text).sum(-1)
        self.offered = 0   # features offered so far (the arrival counter)

    @property
    def text(self) -> torch.Tensor:
        return self.entries[:, 0]

    def counts(self) -> torch.Tensor:
        """Cached test features per slot ``[S]``."""
        return (self.arrival != EMPTY_ARRIVAL).sum(1)

    def used(self) -> torch.Tensor:
        """Indices of the slots holding any cached feature."""
        return torch.nonzero(self.arrival[:, 0] != EMPTY_ARRIVAL).squeeze(1)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size()
                   for t in (self.entries, self.entropy, self.arrival, self.sums, self.gram))

    def write(self, slot: torch.Tensor, features: torch.Tensor, entropy: torch.Tensor) -> None:
        """Offer ``features`` ``[K, d]`` to slots ``slot`` ``[K]`` in row order, with priorities
        ``entropy`` ``[K]``: each slot then holds its ``capacity`` lowest-entropy features of all it
        was offered since the memory was made (the code's append-then-replace rule)."""
        if len(slot) == 0:
            return
        cap = self.capacity
        arrival = self.offered + torch.arange(len(slot), device=slot.device)
        self.offered += len(slot)
        touched = torch.unique(slot)
        old_valid = self.arrival[touched] != EMPTY_ARRIVAL                        # [T, cap]
        old_slot = touched[:, None].expand(-1, cap)[old_valid]
        all_slot = torch.cat([old_slot, slot])
        all_entropy = torch.cat([self.entropy[touched][old_valid], entropy.float()])
        all_arrival = torch.cat([self.arrival[touched][old_valid], arrival])
        all_feats = torch.cat([self.entries[touched, 1:][old_valid], features.float()])
        order, rank = keep_lowest(all_slot, all_entropy, all_arrival, cap)
        kept = order[rank < cap]
        rank = rank[rank < cap]
        self.entries[touched, 1:] = 0
        self.entropy[touched] = float("inf")
        self.arrival[touched] = EMPTY_ARRIVAL
        self.entries[all_slot[kept], 1 + rank] = all_feats[kept]
        self.entropy[all_slot[kept], rank] = all_entropy[kept]
        self.arrival[all_slot[kept], rank] = all_arrival[kept]
        rows = self.entries[touched]                                              # [T, 1 + cap, d]
        self.sums[touched] = rows[:, 1:].sum(1)
        self.gram[touched] = rows @ rows.transpose(1, 2)
