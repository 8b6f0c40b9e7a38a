"""The rejection adapter of Immuno-VLM (Phase 3); its training is :mod:`.vaccination`.

Adapter (the CLIP encoders stay frozen; it works on cached unit image features)::

    g(z) = normalise(z + f_theta(z)),   f_theta = Linear(d, h) -> GELU -> Linear(h, d)

with the last layer zero-initialised, so training starts from ``g = identity`` (frozen CLIP).
At d = 512, h = 512 it has 525,312 parameters (~0.5M).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RejectionAdapter(nn.Module):
    """Residual MLP ``g(z) = normalise(z + f(z))``, identity at initialisation."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        if dim <= 0 or hidden <= 0:
            raise ValueError(f"adapter sizes must be positive, got dim={dim}, hidden={hidden}")
        self.dim, self.hidden = int(dim), int(hidden)
        self.f = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.f[2].weight)
        nn.init.zeros_(self.f[2].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z + self.f(z), dim=-1)
