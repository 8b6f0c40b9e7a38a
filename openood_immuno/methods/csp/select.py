"""CSP's negative label list of a CLIP net: imported from a file, read from the cache, or mined.

Files and cache use NegLabel's label-list format (:mod:`openood_immuno.methods.neglabel.labelfile`):
``noun<TAB>word`` and ``adj<TAB>phrase`` lines, the phrase being the conjugated one
(``adj<TAB>lively environment``).
"""
from __future__ import annotations

import logging

from openood_immuno.methods.neglabel.labelfile import cache_key, cached_labels, import_labels, store_labels
from openood_immuno.methods.neglabel.mining import NegativeLabels
from .mining import mine_csp_labels
from .pool import csp_pool

log = logging.getLogger(__name__)


def csp_labels(net, p) -> NegativeLabels:
    """The list for ``net`` (its ``class_names`` are the ID classes) under :class:`CSPParams` ``p``."""
    if p.neg_labels_file:
        labels = import_labels(p.neg_labels_file)
        log.info("CSP: %d negative labels imported from %s", len(labels), p.neg_labels_file)
        return labels
    nouns, phrases = csp_pool(p.exclude_lexnames, p.superclass_templates, p.conjugation_seed,
                              p.corpus_limit)
    params = {"method": "csp", "neg_ratio": p.neg_ratio, "quantile": p.quantile,
              "duplicate_cos": p.duplicate_cos, "id_templates": list(p.id_templates),
              "noun_templates": list(p.noun_templates), "adj_templates": list(p.adj_templates)}
    key = cache_key(net.identity, net.class_names, nouns, phrases, params)
    labels = cached_labels(key)
    if labels is None:
        labels = mine_csp_labels(net, nouns, phrases, p.neg_ratio, p.quantile, p.duplicate_cos,
                                 p.id_templates, p.noun_templates, p.adj_templates)
        labels.meta = {"method": "csp", "model": net.identity, "n_classes": len(net.class_names),
                       "candidates": f"{len(nouns)} nouns, {len(phrases)} conjugated adjectives",
                       "excluded_lexnames": ",".join(p.exclude_lexnames),
                       "n_labels": len(labels), "neg_ratio": p.neg_ratio, "quantile": p.quantile}
        store_labels(key, labels)
        log.info("CSP: mined %d nouns + %d conjugated adjectives (cache key %s)",
                 len(labels.nouns), len(labels.adjectives), key)
    return labels
