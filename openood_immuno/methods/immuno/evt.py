"""Extreme-value calibration of DIS (Immuno-VLM Sec. 3.6).

For every ID class ``c`` a two-parameter Weibull is fitted (maximum likelihood with the location
fixed; one batched fit over all classes, :func:`fit_weibull_batched`) to the lower tail of the
DIS scores of held-out ID images labelled ``c`` (``evt_fit``: training images not used for
vaccination, or the validation list) -- the tail that borders the OOD region. By default
(``censored``) the tail is fitted as a type-II censored sample of the whole class (the scores
above it are counted, not modelled), so ``F_c`` estimates the class's own CDF and rejecting
``F_pred < tau`` rejects a share ``tau`` of ID images when the fit holds; without censoring the
Weibull of the tail alone is fitted (the earlier fit; it rejected 6.4% at ``tau`` 0.1 with
half the scores as tail, not the 5% its reading promised: docs/immuno_vlm.md, "EVT: what
the fit rejects"). A test image predicted as class ``c`` gets

    F_c(DIS) = 1 - exp(-H_c(DIS)),   H_c(DIS) = ((DIS - floor) / scale_c) ^ shape_c  (0 below floor)

and ``conf = F_pred(DIS)`` (``evt_output: cdf``) or, by default, ``conf = H_pred(DIS) =
-log(1 - F_pred(DIS))`` (``evt_output: hazard``). ``-log(1 - F)`` is one fixed strictly
increasing function of ``F``, so the two rank every pair of images identically and give the
same OpenOOD metrics in exact arithmetic; but ``F`` rounds to exactly 1.0 (float32 above
``H ~ 17``) for most ID images, and those ties lose the ranking, while ``H`` never saturates.

Choices (ours; the paper gives no numbers):

* the tail is the lowest ``max(ceil(tail_fraction * n_c), min(n_c, min_samples))`` scores;
* ``floor`` (the Weibull location, shared by all classes) is ``min - (max - min)`` of all
  fit-set DIS scores, so a test score up to one fit-set range below the lowest fit-set
  score still gets a non-zero confidence;
* classes with fewer than ``min_samples`` fit-set images, or whose fit fails, use the
  pooled fit over all fit-set scores; how many do is logged (:attr:`EVTCalibrator.all_pooled`
  says when every class does).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

log = logging.getLogger(__name__)


def fit_weibull_batched(tails: torch.Tensor, mask: torch.Tensor, iterations: int = 100,
                        censored: Optional[torch.Tensor] = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximum-likelihood ``(shape, scale, ok)`` of a location-0 Weibull for every row at once.

    ``tails`` [R, K] holds each row's samples, padded; ``mask`` [R, K] marks the real ones. With
    ``y = ln x`` over a row's n samples, the MLE shape ``k`` is the root of the profile equation

        g(k) = sum x^k y / sum x^k - 1/k - mean(y) = 0,

    which is strictly increasing in ``k`` (g' = weighted variance of y + 1/k^2 > 0), and the
    scale is ``(mean x^k)^(1/k)`` (e.g. Johnson, Kotz & Balakrishnan, "Continuous Univariate
    Distributions" vol. 1, ch. 21). The root is found by Newton steps on ``log k``, kept inside a
    bracket that bisection shrinks, in float64, all rows together; ``x^k`` is computed as
    ``exp(k (y - max y))`` so it never overflows. ``ok[r]`` is False for a row with fewer than 3
    samples, a non-positive or non-finite sample, all samples equal, or no convergence.
    """
    x, mask = tails.double(), mask.bool()
    if x.shape[1] == 0:  # no row has a sample
        nan = torch.full(x.shape[:1], float("nan"), dtype=x.dtype, device=x.device)
        return nan, nan.clone(), torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    n = mask.sum(dim=1)
    valid = torch.isfinite(x) & (x > 0)
    y = torch.where(mask & valid, x, torch.ones_like(x)).log()
    lowest, highest = torch.finfo(x.dtype).min, torch.finfo(x.dtype).max
    y_max = torch.where(mask, y, torch.full_like(y, lowest)).amax(dim=1, keepdim=True)
    y_min = torch.where(mask, y, torch.full_like(y, highest)).amin(dim=1, keepdim=True)
    ok = (n >= 3) & (valid | ~mask).all(dim=1) & (y_max > y_min).squeeze(1)
    nf = n.clamp(min=1).double()
    yc = torch.where(mask, y - y_max, torch.zeros_like(y))           # y - max y, <= 0; 0 on padding
    yc_mean = yc.sum(dim=1) / nf
    # censored samples sit at the row's largest one (yc = 0, x^k = exp(0) = 1 after the shift)
    extra = (torch.zeros_like(nf) if censored is None
             else torch.as_tensor(censored, dtype=x.dtype, device=x.device).clamp(min=0))

    def weights(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.where(mask, torch.exp(k[:, None] * yc), torch.zeros_like(yc))
        return w, w.sum(dim=1) + extra

    def g_and_slope(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, total = weights(k)
        w = w / total[:, None]
        m1 = (w * yc).sum(dim=1)                                    # censored terms: yc = 0
        var = (w * (yc - m1[:, None]) ** 2).sum(dim=1) + extra / total * m1 ** 2
        return m1 - yc_mean - 1.0 / k, var + 1.0 / k ** 2

    spread = torch.where(ok, (y_max - y_min).squeeze(1), torch.ones_like(yc_mean))
    # g < 0 at k = 1 / (2 (max y - min y)) (there 1/k > max y - mean y); g > 0 for large k
    lo = torch.log(0.5 / spread)
    hi = torch.log(torch.full_like(lo, 1e6))
    y_std = torch.sqrt((torch.where(mask, yc - yc_mean[:, None], 0.0) ** 2).sum(dim=1) / nf)
    start = math.pi / math.sqrt(6) / torch.where(ok, y_std, torch.ones_like(y_std))  # moment guess
    u = torch.minimum(torch.maximum(start.log(), lo), hi)
    done = ~ok
    for _ in range(iterations):
        k = u.exp()
        g, slope = g_and_slope(k)
        lo = torch.where(g < 0, u, lo)
        hi = torch.where(g > 0, u, hi)
        nxt = u - g / (slope * k)                                       # Newton step in u = log k
        nxt = torch.where((nxt >= lo) & (nxt <= hi), nxt, 0.5 * (lo + hi))  # else bisect
        done = done | ((nxt - u).abs() < 1e-12) | (g == 0)
        u = torch.where(done, u, nxt)
        if bool(done.all()):
            break
    k = u.exp()
    root = g_and_slope(k)[0].abs() <= 1e-9 * spread                 # not stuck at a bracket end
    scale = torch.exp(y_max.squeeze(1) + torch.log(weights(k)[1] / nf) / k)
    ok = ok & done & root & torch.isfinite(k) & torch.isfinite(scale)
    return k, scale, ok


def fit_weibull(x: np.ndarray, censored: int = 0) -> tuple[float, float]:
    """``(shape, scale)`` of a Weibull with location 0 fitted to positive samples ``x`` (MLE,
    :func:`fit_weibull_batched` on one row; ``censored`` more samples lie above ``max x``)."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, -1)
    shape, scale, ok = fit_weibull_batched(x, torch.ones_like(x, dtype=torch.bool),
                                           censored=torch.tensor([censored]))
    if not bool(ok[0]):
        raise ValueError(f"a Weibull fit needs >= 3 distinct positive finite samples, got "
                         f"{x.shape[1]}, and a converged fit")
    return float(shape[0]), float(scale[0])


def lower_tail(scores: np.ndarray, tail_fraction: float, min_samples: int) -> np.ndarray:
    """The ``max(ceil(tail_fraction * n), min(n, min_samples))`` lowest scores."""
    _check_tail_fraction(tail_fraction)
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    return scores[:_tail_size(scores.size, tail_fraction, min_samples)]


def _check_tail_fraction(tail_fraction: float) -> None:
    if not 0 < tail_fraction <= 1:
        raise ValueError(f"tail_fraction must lie in (0, 1], got {tail_fraction}")


def _tail_size(n, tail_fraction: float, min_samples: int):
    """``max(ceil(tail_fraction * n), min(n, min_samples))`` for an int or an int array ``n``."""
    return np.maximum(np.ceil(tail_fraction * np.asarray(n)).astype(np.int64),
                      np.minimum(n, int(min_samples)))


def class_tails(scores: np.ndarray, labels: np.ndarray, classes: np.ndarray, tail_fraction: float,
                min_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The lower tails (:func:`lower_tail`) of the scores of every class in ``classes``, padded
    into one ``[len(classes), K]`` float64 tensor, with the mask of the real entries."""
    _check_tail_fraction(tail_fraction)
    keep = np.isin(labels, classes)
    s, y = scores[keep], labels[keep]
    order = np.lexsort((s, y))                       # by class, then ascending score
    s, y = s[order], y[order]
    row = np.searchsorted(classes, y)
    counts = np.bincount(row, minlength=classes.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(s.size) - starts[row]             # rank of each score within its class
    k = _tail_size(counts, tail_fraction, min_samples)
    take = pos < k[row]
    width = int(k.max()) if k.size else 0
    tails = np.zeros((classes.size, width))
    tails[row[take], pos[take]] = s[take]
    mask = np.arange(width)[None, :] < k[:, None]
    return torch.from_numpy(tails), torch.from_numpy(mask)


@dataclass
class EVTCalibrator:
    """Per-class Weibull parameters; ``pooled[c]`` marks classes that use the pooled fit."""

    shape: torch.Tensor
    scale: torch.Tensor
    floor: float
    pooled: torch.Tensor
    samples: int = 0

    @property
    def all_pooled(self) -> bool:
        """Every class uses the pooled fit: conf is then one increasing function of DIS, so it
        ranks every pair of images exactly as ``immuno_dis`` does."""
        return bool(self.pooled.all())

    @classmethod
    def fit(cls, scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
            tail_fraction: float = 0.5, min_samples: int = 5, censored: bool = True) -> "EVTCalibrator":
        """Fit every class's Weibull on ``scores`` of the images labelled with it (``censored``:
        the tail as a type-II censored sample of the whole class, see the module docstring)."""
        s = scores.detach().double().cpu().numpy()
        y = labels.detach().long().cpu().numpy()
        if s.size < 3 or np.ptp(s) <= 0:
            raise ValueError(f"EVT calibration needs at least 3 distinct validation scores, got "
                             f"{s.size}: give the postprocessor an ID 'val' split (or use the "
                             "variant without EVT, immuno_dis)")
        floor = float(s.min() - np.ptp(s))
        pooled_tail = lower_tail(s, tail_fraction, min_samples) - floor
        pooled_fit = fit_weibull(pooled_tail, s.size - pooled_tail.size if censored else 0)
        shape = np.full(num_classes, pooled_fit[0])
        scale = np.full(num_classes, pooled_fit[1])
        pooled = np.ones(num_classes, dtype=bool)
        counts = np.bincount(y[(y >= 0) & (y < num_classes)], minlength=num_classes)
        classes = np.flatnonzero(counts >= max(3, min_samples))
        tails, mask = class_tails(s, y, classes, tail_fraction, min_samples)
        above = torch.from_numpy(counts[classes] - mask.sum(dim=1).numpy()) if censored else None
        fit_shape, fit_scale, ok = fit_weibull_batched(tails - floor, mask, censored=above)
        fitted = classes[ok.numpy()]
        shape[fitted], scale[fitted] = fit_shape[ok].numpy(), fit_scale[ok].numpy()
        pooled[fitted] = False
        failed = int((~ok).sum())
        n_pooled = int(pooled.sum())
        log.info("EVT: per-class Weibull fits for %d of %d classes; %d use the pooled fit (%d with "
                 "fewer than %d fit samples, %d failed fits; pooled shape %.3g, scale %.3g, "
                 "%d samples)", num_classes - n_pooled, num_classes, n_pooled, n_pooled - failed,
                 max(3, min_samples), failed, pooled_fit[0], pooled_fit[1], s.size)
        return cls(torch.from_numpy(shape), torch.from_numpy(scale), floor, torch.from_numpy(pooled),
                   int(s.size))

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
