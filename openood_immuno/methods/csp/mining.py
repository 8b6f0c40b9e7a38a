"""CSP's selection of negative labels (the authors' ``pos_neg_sim='neg_centroid'`` branch).

For a candidate with unit text feature ``e_j`` and ID class features ``t_1..t_C``:

    d_j = quantile_eta( { cos(e_j, t_i) : i = 1..C } )     (eta = 0.95, linear interpolation)
    d_j = 1            if max_i cos(e_j, t_i) > 0.95        (a near-synonym of an ID class)

Nouns and conjugated adjective phrases are ranked apart by ascending ``d_j`` and the lowest
``floor(ratio * pool size)`` of each kept (``neg_topk = 0.15``): unlike NegLabel, a share of
each pool rather than a fixed total.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from openood_immuno.methods.neglabel.mining import NegativeLabels, lowest, quantile_scores

log = logging.getLogger(__name__)


def csp_distances(candidate_features: torch.Tensor, id_features: torch.Tensor,
                  quantile: float = 0.95, duplicate_cos: float = 0.95) -> torch.Tensor:
    """``d_j`` of every candidate ``[N]`` (see the module docstring)."""
    return quantile_scores(candidate_features, id_features, quantile, duplicate_cos)


def kept_count(pool_size: int, ratio: float) -> int:
    """``floor(ratio * pool_size)`` (the authors' ``int(len(ind) * neg_topk)``)."""
    return int(pool_size * ratio)


def mine_csp_labels(net, nouns: Sequence[str], phrases: Sequence[str], ratio: float,
                    quantile: float, duplicate_cos: float, id_templates: Sequence[str],
                    noun_templates: Sequence[str], adj_templates: Sequence[str]) -> NegativeLabels:
    """The kept nouns and phrases, each in ascending ``d_j`` (ties keep pool order)."""
    m_noun, m_adj = kept_count(len(nouns), ratio), kept_count(len(phrases), ratio)
    if m_noun + m_adj == 0:
        raise ValueError(f"neg_ratio={ratio} keeps no candidate of {len(nouns)} nouns and "
                         f"{len(phrases)} phrases: raise neg_ratio or corpus_limit (0 = all WordNet)")
    id_feats = net.encode_text(net.class_names, tuple(id_templates))
    log.info("CSP mining: encoding %d nouns and %d conjugated adjectives", len(nouns), len(phrases))
    picked = []
    for words, templates, m in ((nouns, noun_templates, m_noun), (phrases, adj_templates, m_adj)):
        if m == 0:
            picked.append([])
            continue
        d = csp_distances(net.encode_text(list(words), tuple(templates)), id_feats, quantile,
                          duplicate_cos)
        picked.append([words[i] for i in lowest(d, m).tolist()])
    return NegativeLabels(picked[0], picked[1])
