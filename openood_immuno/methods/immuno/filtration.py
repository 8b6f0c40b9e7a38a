"""Band-pass filtration of antibodies (Immuno-VLM Prop. 3.6).

Antibody ``a`` of class ``c`` is kept iff

    delta_low <= cos(e(a), mu_c) <= delta_high.

Above ``delta_high`` an antibody is nearly a synonym of the class and would reject its own
ID images (auto-immunity); below ``delta_low`` it is too far from the class to sharpen its
boundary and only adds noise to ``S_nonself``.

``band_pass: false`` (the Table-2 "no filter" rows) keeps every antibody: :func:`no_filter_mask`
and a :class:`FilterReport` that says the filter was off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch


def band_pass_mask(antibodies: torch.Tensor, owner: torch.Tensor, prototypes: torch.Tensor,
                   delta_low: float, delta_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep [M] bool, cos [M])`` for antibody embeddings ``[M, d]`` owned by classes ``owner [M]``."""
    if delta_low > delta_high:
        raise ValueError(f"band-pass filter needs delta_low <= delta_high, got {delta_low} > {delta_high}")
    if antibodies.shape[0] != owner.shape[0]:
        raise ValueError(f"{antibodies.shape[0]} antibody embeddings but {owner.shape[0]} owners")
    owner = owner.long().to(prototypes.device)
    cos = (antibodies.float().to(prototypes.device) * prototypes.float()[owner]).sum(1)
    return (cos >= delta_low) & (cos <= delta_high), cos


def no_filter_mask(owner: torch.Tensor) -> torch.Tensor:
    """``keep [M]``, all true: every antibody is used (``band_pass: false``)."""
    return torch.ones(owner.shape[0], dtype=torch.bool, device=owner.device)


@dataclass
class FilterReport:
    """Antibodies per class before and after the band-pass filter (``enabled=False``: no
    filter was applied, before == after)."""

    before: torch.Tensor
    after: torch.Tensor
    delta_low: float
    delta_high: float
    enabled: bool = True

    @classmethod
    def from_mask(cls, owner: torch.Tensor, keep: torch.Tensor, num_classes: int,
                  delta_low: float, delta_high: float, enabled: bool = True) -> "FilterReport":
        owner = owner.long().cpu()
        return cls(torch.bincount(owner, minlength=num_classes),
                   torch.bincount(owner[keep.cpu()], minlength=num_classes), delta_low, delta_high,
                   enabled)

    def summary(self) -> str:
        """One line: totals, per-class mean/min/max after filtering, classes left with none."""
        b, a = self.before.float(), self.after.float()
        band = f"band-pass [{self.delta_low:g}, {self.delta_high:g}]" if self.enabled else \
            "band-pass off (band_pass: false)"
        return (f"{band}: {int(a.sum())} of "
                f"{int(b.sum())} antibodies survive; per class before mean {b.mean():.1f} "
                f"(min {int(b.min())}, max {int(b.max())}), after mean {a.mean():.1f} "
                f"(min {int(a.min())}, max {int(a.max())}); {int((a == 0).sum())} of {len(a)} "
                "classes keep none")

    def per_class(self, class_names: Optional[Sequence[str]] = None) -> list[dict]:
        names = class_names or [str(i) for i in range(len(self.before))]
        return [{"class": n, "before": int(b), "after": int(a)}
                for n, b, a in zip(names, self.before.tolist(), self.after.tolist())]
