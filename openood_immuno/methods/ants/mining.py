"""ANTS negative-image mining with the adaptive threshold (Zhu et al., ANTS, Sec. 3.2).

Each batch, images whose NegLabel score ``S_base`` is below the current threshold (initially
0.8) are cached with their predicted class. When the cache holds more than ``min_cache``
images (200 in the ANTS code), the threshold is recomputed from every ``S_base`` seen so far
(:func:`histogram_jump_threshold`, the code's rule; :func:`paper_threshold` is Eq. 5-6 of the
paper), the cached images go to the MLLM and the cache is cleared; after ``max_updates`` such
updates (``ens_stop_step`` = 20) caching stops.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch

from .params import ANTSParams


def histogram_jump_threshold(scores: Sequence[float] | np.ndarray | torch.Tensor, eta: float = 0.5,
                             n_bins: int = 10) -> tuple[float, float]:
    """``(threshold, upper)`` from the histogram of ``scores`` in [0, 1].

    Bins: ``n_bins`` equal bins on [0, 1] (edges 0.0, 0.1, ..., 1.0 for 10, numpy's histogram:
    right-closed last bin, values outside [0, 1] not counted). ``j = argmax_i |count[i+1] -
    count[i]|`` (first on ties), ``upper`` = right edge of bin ``j``, and ``threshold`` = the
    ``eta``-percentile (numpy linear interpolation) of the scores below ``upper``, or of all
    scores when none is below it. ``eta`` in [0, 1] and ``n_bins >= 2`` are
    :class:`~.params.ANTSParams`' ranges of ``eta`` and ``hist_bins`` (checked there, once).
    """
    values = np.asarray(torch.as_tensor(scores).detach().cpu().float().numpy(), dtype=np.float32).ravel()
    if values.size == 0:
        raise ValueError("the adaptive threshold needs at least one score")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts, _ = np.histogram(values, edges)
    j = int(np.argmax(np.abs(np.diff(counts))))
    upper = float(edges[j + 1])
    low = values[values < upper]
    threshold = float(np.percentile(low if low.size else values, eta * 100.0))
    return threshold, upper


def paper_threshold(scores: Sequence[float] | np.ndarray | torch.Tensor, gamma: float,
                    eta: float) -> tuple[float, float]:
    """``(gamma_star, gamma)``: the adaptive threshold of the ANTS paper, Eq. 5-6.

    Eq. 5 keeps the candidates ``X_hat = {x : S_nl(x) < gamma}`` (``gamma`` = the initial
    threshold); Eq. 6 takes ``X_neg = Top(X_hat, -S_nl, eta)``, the ``k`` candidates with the
    LOWEST scores, and ``gamma_star = max_{x in X_neg} S_nl(x)``, i.e. the ``k``-th smallest
    candidate score. The paper does not say how ``eta * |X_hat|`` is rounded: here
    ``k = ceil(eta * |X_hat|)`` (so at least one candidate). ``eta`` in (0, 1] is
    :class:`~.params.ANTSParams`' rule for ``threshold_rule: paper`` (checked there, once).
    """
    values = np.asarray(torch.as_tensor(scores).detach().cpu().float().numpy(), dtype=np.float32).ravel()
    candidates = np.sort(values[values < gamma])
    if candidates.size == 0:
        raise ValueError(f"no score below gamma={gamma}: the paper's threshold (Eq. 6) needs at "
                         "least one candidate negative")
    k = max(1, math.ceil(round(eta * candidates.size, 9)))
    return float(candidates[k - 1]), float(gamma)


class NegativeImageMiner:
    """Online state of the mining step (threshold, score history, candidate cache).

    Its settings are read from ``params`` (:class:`~.params.ANTSParams`, validated there):
    ``init_threshold``, ``eta``, ``hist_bins``, ``mine_min_cache``, ``ens_max_updates`` and
    ``threshold_rule`` (``code``: histogram jump; ``paper``: Eq. 5-6 with ``gamma =
    init_threshold``). ``upper`` is the bound the threshold was taken under: the histogram
    jump's bin edge, or ``gamma``.
    """

    def __init__(self, params: ANTSParams):
        self.params = params
        self.reset()

    @property
    def max_updates(self) -> int:
        return self.params.ens_max_updates

    def reset(self) -> None:
        self.threshold = float(self.params.init_threshold)
        self.updates = 0
        self.upper: float | None = None
        self.history: list[torch.Tensor] = []
        self.cache: list[tuple[Any, int]] = []
        self.mined_predictions: Counter = Counter()

    def observe(self, scores: torch.Tensor, preds: torch.Tensor,
                sources: Sequence[Any] | None) -> torch.Tensor:
        """Record a batch; returns the mask of mined images (``S_base < threshold``).

        Mined images are cached for the MLLM while updates remain and ``sources`` (image
        paths or PIL images) are known.
        """
        scores = scores.detach().float().cpu()
        self.history.append(scores)
        mined = scores < self.threshold
        idx = mined.nonzero().flatten().tolist()
        pred_list = preds.detach().cpu().tolist()
        self.mined_predictions.update(pred_list[i] for i in idx)
        if sources is not None and self.updates < self.max_updates:
            if len(sources) != len(scores):
                raise ValueError(f"{len(sources)} image sources for a batch of {len(scores)}: pass "
                                 "one path (or image) per feature row")
            self.cache.extend((sources[i], pred_list[i]) for i in idx)
        return mined

    def ready(self) -> bool:
        return self.updates < self.max_updates and len(self.cache) > self.params.mine_min_cache

    def take(self) -> list[tuple[Any, int]]:
        """Recompute the threshold from every score so far, return and clear the cache."""
        scores, p = torch.cat(self.history), self.params
        if p.threshold_rule == "paper":
            self.threshold, self.upper = paper_threshold(scores, p.init_threshold, p.eta)
        else:
            self.threshold, self.upper = histogram_jump_threshold(scores, p.eta, p.hist_bins)
        items, self.cache = self.cache, []
        self.updates += 1
        return items
