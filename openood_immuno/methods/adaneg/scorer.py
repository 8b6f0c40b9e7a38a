"""The fitted AdaNeg scorer over a test stream: NegLabel's banks, the feature memory, the score.

One batch (the code's order): NegLabel logits and ``S_nl`` -> the gate picks the features to
cache -> the memory is written (so a batch's proxies already see its own features) -> adaptive
logits and ``S_ada`` -> ``S_AdaNeg``. Formulas: :mod:`openood_immuno.scores.adaneg`.
"""
from __future__ import annotations

from typing import Optional

import torch

from openood_immuno.methods.neglabel import NegLabelScorer
from openood_immuno.scores.adaneg import (adaneg_prediction, adaneg_score, gate, sample_adaptive_logits,
                                          softmax_entropy, task_adaptive_proxies)
from openood_immuno.scores.grouped import grouped_id_mass
from .memory import FeatureMemory
from .params import AdaNegParams


class AdaNegScorer:
    """``fit(net, base)`` over a fitted :class:`NegLabelScorer`; ``score`` one batch; ``reset()``
    forgets the memory (it is made again, empty, at the next batch)."""

    def __init__(self, params: AdaNegParams):
        self.params = params
        self.base: Optional[NegLabelScorer] = None
        self.memory: Optional[FeatureMemory] = None
        self.streams = 0

    def fit(self, base: NegLabelScorer) -> "AdaNegScorer":
        self.base = base
        self.text = torch.cat([base.id_text, base.neg_text.to(base.id_text.device)]).float()
        self.num_id = base.id_text.shape[0]
        self.reset()
        return self

    def reset(self) -> None:
        self.memory = None
        self.batches = self.samples = self.offered_id = self.offered_neg = 0

    def _grouped(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        return grouped_id_mass(logits, self.num_id, "neglabel", p.n_groups, seed=p.group_seed)

    @torch.no_grad()
    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, S_AdaNeg)`` for unit image features ``[B, d]``; the memory is updated first."""
        if self.base is None:
            raise RuntimeError("AdaNeg scorer used before fit(): call fit(base) first")
        p, c = self.params, self.num_id
        x = features.float().to(self.text.device)
        if self.memory is None:
            self.memory = FeatureMemory(self.text, p.capacity)
            self.streams += 1
        z = p.logit_scale * x @ self.text.T                                    # [B, S]
        s_nl = self._grouped(z)
        to_id, to_neg = gate(s_nl, p.threshold, p.gap)
        write = to_id | to_neg
        rows, as_id = z[write], to_id[write]
        slot = torch.where(as_id, rows[:, :c].argmax(1), c + rows[:, c:].argmax(1))
        entropy = torch.where(as_id, softmax_entropy(rows[:, :c]), softmax_entropy(rows[:, c:]))
        self.memory.write(slot, x[write], entropy)
        if p.sample_adaptive:   # a slot without cached features keeps its text feature: a_c = z_c
            used, mem = self.memory.used(), self.memory
            if len(used) == len(self.text):
                a = sample_adaptive_logits(x, mem.entries, mem.gram, p.beta, p.logit_scale)
            else:
                a = z.clone()
                a[:, used] = sample_adaptive_logits(x, mem.entries[used], mem.gram[used], p.beta,
                                                    p.logit_scale)
        else:
            a = p.logit_scale * x @ task_adaptive_proxies(self.memory.text, self.memory.sums).T
        s_ada = self._grouped(a)
        self.batches += 1
        self.samples += len(x)
        self.offered_id += int(to_id.sum())
        self.offered_neg += int(to_neg.sum())
        return adaneg_prediction(z, a, c, p.lam), adaneg_score(s_ada, s_nl, p.lam, p.combine)

    def status(self) -> dict:
        """The stream so far: batches, samples, features offered to ID / negative slots, features
        cached, slots holding any, memory bytes."""
        mem = self.memory
        counts = mem.counts() if mem is not None else None
        return {"streams": self.streams, "batch": self.batches, "samples": self.samples,
                "offered_id": self.offered_id, "offered_neg": self.offered_neg,
                "cached_id": 0 if counts is None else int(counts[:self.num_id].sum()),
                "cached_neg": 0 if counts is None else int(counts[self.num_id:].sum()),
                "slots_used": 0 if counts is None else int((counts > 0).sum()),
                "memory_bytes": 0 if mem is None else mem.nbytes()}
