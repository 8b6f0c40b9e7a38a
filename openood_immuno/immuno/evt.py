"""Extreme-value calibration of DIS (Immuno-VLM Sec. 3.6).

For every ID class ``c`` a two-parameter Weibull is fitted (maximum likelihood,
``scipy.stats.weibull_min`` with the location fixed) to the lower tail of the validation DIS
scores of the images labelled ``c`` -- the tail that borders the OOD region. A test image
predicted as class ``c`` gets

    F_c(DIS) = 1 - exp(-H_c(DIS)),   H_c(DIS) = ((DIS - floor) / scale_c) ^ shape_c  (0 below floor)

and ``conf = F_pred(DIS)`` (``evt_output: cdf``) or, by default, ``conf = H_pred(DIS) =
-log(1 - F_pred(DIS))`` (``evt_output: hazard``). ``-log(1 - F)`` is one fixed strictly
increasing function of ``F``, so the two rank every pair of images identically and give the
same OpenOOD metrics in exact arithmetic; but ``F`` rounds to exactly 1.0 (float32 above
``H ~ 17``) for most ID images, and those ties lose the ranking, while ``H`` never saturates.

Choices (ours; the paper gives no numbers):

* the tail is the lowest ``max(ceil(tail_fraction * n_c), min(n_c, min_samples))`` scores;
* ``floor`` (the Weibull location, shared by all classes) is ``min - (max - min)`` of all
  validation DIS scores, so a test score up to one validation range below the lowest
  validation score still gets a non-zero confidence;
* classes with fewer than ``min_samples`` validation images, or whose fit fails, use the
  pooled fit over all validation scores; how many do is logged.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


def fit_weibull(x: np.ndarray) -> tuple[float, float]:
    """``(shape, scale)`` of a Weibull with location 0 fitted to positive samples ``x`` (MLE)."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    if x.size < 3 or not np.all(np.isfinite(x)) or np.any(x <= 0) or np.ptp(x) <= 0:
        raise ValueError(f"a Weibull fit needs >= 3 distinct positive finite samples, got {x.size}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shape, _, scale = stats.weibull_min.fit(x, floc=0.0)
    if not (np.isfinite(shape) and np.isfinite(scale) and shape > 0 and scale > 0):
        raise ValueError("the Weibull fit did not converge")
    return float(shape), float(scale)


def lower_tail(scores: np.ndarray, tail_fraction: float, min_samples: int) -> np.ndarray:
    """The ``max(ceil(tail_fraction * n), min(n, min_samples))`` lowest scores."""
    if not 0 < tail_fraction <= 1:
        raise ValueError(f"tail_fraction must lie in (0, 1], got {tail_fraction}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    k = max(math.ceil(tail_fraction * scores.size), min(scores.size, int(min_samples)))
    return scores[:k]


@dataclass
class EVTCalibrator:
    """Per-class Weibull parameters; ``pooled[c]`` marks classes that use the pooled fit."""

    shape: torch.Tensor
    scale: torch.Tensor
    floor: float
    pooled: torch.Tensor

    @classmethod
    def fit(cls, scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
            tail_fraction: float = 0.5, min_samples: int = 5) -> "EVTCalibrator":
        s = scores.detach().double().cpu().numpy()
        y = labels.detach().long().cpu().numpy()
        if s.size < 3 or np.ptp(s) <= 0:
            raise ValueError(f"EVT calibration needs at least 3 distinct validation scores, got "
                             f"{s.size}: give the postprocessor an ID 'val' split (or use the "
                             "variant without EVT, immuno_dis)")
        floor = float(s.min() - np.ptp(s))
        pooled_fit = fit_weibull(lower_tail(s, tail_fraction, min_samples) - floor)
        shape = np.full(num_classes, pooled_fit[0])
        scale = np.full(num_classes, pooled_fit[1])
        pooled = np.ones(num_classes, dtype=bool)
        failed = 0
        for c in np.unique(y[(y >= 0) & (y < num_classes)]):
            sc = s[y == c]
            if sc.size < max(3, min_samples):
                continue
            try:
                shape[c], scale[c] = fit_weibull(lower_tail(sc, tail_fraction, min_samples) - floor)
                pooled[c] = False
            except ValueError:
                failed += 1
        n_pooled = int(pooled.sum())
        log.info("EVT: per-class Weibull fits for %d of %d classes; %d use the pooled fit (%d with "
                 "fewer than %d validation samples, %d failed fits; pooled shape %.3g, scale %.3g, "
                 "%d samples)", num_classes - n_pooled, num_classes, n_pooled, n_pooled - failed,
                 max(3, min_samples), failed, pooled_fit[0], pooled_fit[1], s.size)
        return cls(torch.from_numpy(shape), torch.from_numpy(scale), floor, torch.from_numpy(pooled))

    def hazard(self, scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``H_c(score) = -log(1 - F_c(score))`` for each score and its (predicted) class, float64,
        capped at 1e30 so that it stays finite in float32."""
        c = classes.long().cpu()
        x = (scores.detach().double().cpu() - self.floor).clamp(min=0)
        return ((x / self.scale[c]) ** self.shape[c]).clamp(max=1e30)

    def thresholds(self, level: float = 0.5) -> torch.Tensor:
        """Per-class DIS where ``F_c = level``: ``floor + scale_c (-log(1 - level))^(1/shape_c)``."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        return self.floor + self.scale * (-math.log1p(-level)) ** (1.0 / self.shape)

    def cdf(self, scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``F_c(score)`` for each score and its (predicted) class, float64."""
        return -torch.expm1(-self.hazard(scores, classes))
