"""The VSNL bank of ANTS (visually similar negative labels): for each "active" ID class, the
MLLM's names of visually similar classes. Each class is asked once (the answer is kept); the
bank is the de-duplicated union of the names of the currently active classes, in activation
order.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .ens import dedupe


class VSNLBank:
    """Per-class similar names; the bank is the union over the active classes."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.names_by_class: dict[int, list[str]] = {}
        self.active: list[int] = []
        self.labels: list[str] = []
        self.features: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.labels)

    def missing(self, classes: Sequence[int]) -> list[int]:
        """The classes among ``classes`` whose names were never asked for."""
        return [c for c in classes if c not in self.names_by_class]

    def update(self, active: Sequence[int], answers: dict[int, list[str]]) -> list[str]:
        """Store new ``answers`` (class -> names), set the active classes; returns the bank labels."""
        self.names_by_class.update(answers)
        self.active = list(active)
        self.labels = dedupe(name for c in self.active for name in self.names_by_class.get(c, []))
        return self.labels
