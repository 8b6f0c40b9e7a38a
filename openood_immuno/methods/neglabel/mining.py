"""NegLabel's negative-label mining (Jiang et al., ICLR 2024, Sec. 3.2, Eq. 3-4).

For a candidate word ``n_j`` with text feature ``e_j`` and ID class features ``t_1..t_C``:

    d_j = quantile_eta( { cos(e_j, t_i) : i = 1..C } ),   eta = 0.95

i.e. a candidate is as "ID-like" as its 5% most similar classes. The candidates with the
LOWEST d_j are kept (furthest from the ID label space), nouns and adjectives ranked separately:
M in all, split between them by pool size (:func:`split_budget`, the default), or a fixed
fraction of each pool (:func:`fraction_budget`: the NegLabel code's ``neg_topk = 0.15``).
Prompts follow the NegLabel config (prompt index 85): ``'the nice {}'`` for ID classes and
nouns, ``'This is a {} photo'`` for adjectives. The quantile is ``torch.quantile`` with linear
interpolation, as in the NegLabel code.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

log = logging.getLogger(__name__)

ID_TEMPLATE = "the nice {}"
NOUN_TEMPLATE = "the nice {}"
ADJ_TEMPLATE = "This is a {} photo"
_CHUNK = 1024


@dataclass
class NegativeLabels:
    """A mined negative label list: nouns then adjectives, each in ascending ``d_j``."""

    nouns: list[str]
    adjectives: list[str]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.nouns) + len(self.adjectives)

    def encode(self, net, noun_template: str = NOUN_TEMPLATE,
               adj_template: str = ADJ_TEMPLATE) -> torch.Tensor:
        """Unit text features ``[M, d]`` (nouns first), prompted as in NegLabel."""
        parts = [net.encode_text(self.nouns, (noun_template,)) if self.nouns else None,
                 net.encode_text(self.adjectives, (adj_template,)) if self.adjectives else None]
        return torch.cat([p for p in parts if p is not None])


def quantile_scores(candidate_features: torch.Tensor, id_features: torch.Tensor,
                    quantile: float = 0.95, duplicate_cos: Optional[float] = None) -> torch.Tensor:
    """``d_j`` = the ``quantile`` over ID classes of cos(candidate_j, class_i); ``[N]``.

    ``duplicate_cos`` (CSP's rule): a candidate whose highest cosine to an ID class exceeds it
    gets ``d_j = 1``, so it is never among the lowest (kept) ones."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    out = []
    id_features = id_features.float()
    for i in range(0, candidate_features.shape[0], _CHUNK):
        sim = candidate_features[i:i + _CHUNK].float().to(id_features.device) @ id_features.T
        d = torch.quantile(sim, quantile, dim=1)
        if duplicate_cos is not None:
            d[sim.max(dim=1).values > duplicate_cos] = 1.0
        out.append(d.cpu())
    return torch.cat(out) if out else torch.zeros(0)


def lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` lowest scores, ascending (ties keep candidate order)."""
    return torch.sort(scores, stable=True).indices[:k]


def split_budget(n_labels: int, n_nouns: int, n_adjectives: int) -> tuple[int, int]:
    """``(m_noun, m_adj)``: ``n_labels`` split by pool size; raises if the pools are too small."""
    total = n_nouns + n_adjectives
    if n_labels <= 0:
        raise ValueError(f"n_neg_labels must be >= 1, got {n_labels}")
    if n_labels > total:
        raise ValueError(f"n_neg_labels={n_labels} exceeds the {total} candidate words: lower "
                         f"n_neg_labels or enlarge the corpus (corpus_limit=0 uses all of WordNet)")
    m_noun = round(n_labels * n_nouns / total)
    return m_noun, n_labels - m_noun


def fraction_budget(fraction: float, n_nouns: int, n_adjectives: int) -> tuple[int, int]:
    """``(m_noun, m_adj)`` = ``int(fraction * pool size)`` of each pool, the NegLabel code's rule
    (``neg_topk``, 0.15 in its ImageNet config; truncated as the code's ``int()``)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"neg_fraction must be in (0, 1) for the per-pool rule, got {fraction}")
    m_noun, m_adj = int(n_nouns * fraction), int(n_adjectives * fraction)
    if m_noun + m_adj == 0:
        raise ValueError(f"neg_fraction={fraction} keeps no candidate of {n_nouns} nouns and "
                         f"{n_adjectives} adjectives: raise neg_fraction or corpus_limit")
    return m_noun, m_adj


def mine_negative_labels(net, nouns: Sequence[str], adjectives: Sequence[str],
                         n_labels: int = 10_000, quantile: float = 0.95,
                         id_template: str = ID_TEMPLATE, noun_template: str = NOUN_TEMPLATE,
                         adj_template: str = ADJ_TEMPLATE, fraction: float = 0.0) -> NegativeLabels:
    """Keep the candidates with the lowest ``d_j`` (nouns and adjectives ranked apart):
    ``n_labels`` in all split by pool size, or, with ``fraction > 0``, ``int(fraction * pool)``
    of each pool (``n_labels`` unused)."""
    m_noun, m_adj = (fraction_budget(fraction, len(nouns), len(adjectives)) if fraction > 0
                     else split_budget(n_labels, len(nouns), len(adjectives)))
    id_feats = net.encode_text(net.class_names, (id_template,))
    log.info("NegLabel mining: encoding %d nouns and %d adjectives", len(nouns), len(adjectives))
    picked = []
    for words, template, m in ((nouns, noun_template, m_noun), (adjectives, adj_template, m_adj)):
        if m == 0:
            picked.append([])
            continue
        d = quantile_scores(net.encode_text(list(words), (template,)), id_feats, quantile)
        picked.append([words[i] for i in lowest(d, m).tolist()])
    return NegativeLabels(picked[0], picked[1])
