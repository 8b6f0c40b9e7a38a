"""The adaptive fusion of ANTS: S_ada = lambda S_ens + (1 - lambda) S_vsnl.

lambda = F(a, b) = (1 - a) / ((1 - a) + (1 - b)), a = mean S_ens, b = mean S_vsnl: the space
whose scores are lower on average (more "OOD-looking" test data) gets more weight. The means
are running means over the stream; which samples enter them is the caller's choice (the paper's
text: mined negatives; the ANTS code: every sample, on "balanced" scores). F is 0.5 when both
means are 1: the ANTS code's guard is ``|(1 - a) + (1 - b)| < torch.finfo(torch.float32).eps``
(its means are float32 tensors), and so is this one.
"""
from __future__ import annotations

import torch


LAMBDA_EPS = float(torch.finfo(torch.float32).eps)
"""The ANTS code's guard of the lambda denominator (float32 machine epsilon, ~1.19e-7)."""


def adaptive_lambda(mean_ens: float, mean_vsnl: float, eps: float = LAMBDA_EPS) -> float:
    """``F(a, b) = (1 - a) / ((1 - a) + (1 - b))``; 0.5 when ``|denominator| < eps``."""
    ua, ub = 1.0 - float(mean_ens), 1.0 - float(mean_vsnl)
    den = ua + ub
    return 0.5 if abs(den) < eps else ua / den


def fuse(s_ens: torch.Tensor, s_vsnl: torch.Tensor, lam: float) -> torch.Tensor:
    """``lambda * S_ens + (1 - lambda) * S_vsnl``."""
    return lam * s_ens + (1.0 - lam) * s_vsnl


class RunningMean:
    """Mean of every value added so far (float64 sum and count)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, values: torch.Tensor) -> None:
        self.total += float(values.double().sum())
        self.count += int(values.numel())

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None
