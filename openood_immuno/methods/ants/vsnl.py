"""The VSNL bank of ANTS (visually similar negative labels): for each "active" ID class, the
MLLM's names of visually similar classes.

Order, as the ANTS code keeps its class -> names cache (a dict, so insertion order): at each
update the classes that left the active set are dropped, the newly active ones are appended in
the order they were selected (most frequent first), and the bank is the de-duplicated union of
the names in that order. So the bank is NOT in the current most-frequent order: a class active
since the first update stays in front even when others overtake it. The order matters whenever
the bank exceeds one group (40 classes x 5 names > 100): which names are dropped (n mod K) and
which share a group follow it.

Each class is asked once and its answer kept (the code deletes the answer of a class that
leaves and asks again if it returns; with greedy decoding that is the same answer), so a class
that returns is appended at the end with its kept names, where the code puts it too.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .ens import dedupe


class VSNLBank:
    """Per-class similar names; the bank is the union over the active classes in cache order."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.names_by_class: dict[int, list[str]] = {}
        self.active: list[int] = []            # the active classes in the code's cache order
        self.labels: list[str] = []
        self.features: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.labels)

    def missing(self, classes: Sequence[int]) -> list[int]:
        """The classes among ``classes`` whose names were never asked for."""
        return [c for c in classes if c not in self.names_by_class]

    def update(self, active: Sequence[int], answers: dict[int, list[str]]) -> list[str]:
        """Store new ``answers`` (class -> names) and make ``active`` (most frequent first) the
        active set: classes no longer in it leave, new ones are appended in ``active``'s order.
        Returns the bank labels."""
        self.names_by_class.update(answers)
        now = set(active)
        kept = [c for c in self.active if c in now]
        staying = set(kept)
        self.active = kept + [c for c in dict.fromkeys(active) if c not in staying]
        self.labels = dedupe(name for c in self.active for name in self.names_by_class.get(c, []))
        return self.labels
