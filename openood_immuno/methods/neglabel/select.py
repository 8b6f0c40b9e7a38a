"""The negative label list of a CLIP net: imported from a file, read from the cache, or mined."""
from __future__ import annotations

import logging
from typing import Sequence

from .corpus import NEGLABEL_EXCLUDED_LEXNAMES, limited_corpus, wordnet_corpus
from .labelfile import cache_key, cached_labels, import_labels, store_labels
from .mining import ADJ_TEMPLATE, ID_TEMPLATE, NOUN_TEMPLATE, NegativeLabels, mine_negative_labels

log = logging.getLogger(__name__)


def negative_labels(net, n_labels: int = 10_000, quantile: float = 0.95,
                    id_template: str = ID_TEMPLATE, noun_template: str = NOUN_TEMPLATE,
                    adj_template: str = ADJ_TEMPLATE,
                    exclude_lexnames: Sequence[str] = NEGLABEL_EXCLUDED_LEXNAMES,
                    corpus_limit: int = 0, labels_file: str = "",
                    fraction: float = 0.0) -> NegativeLabels:
    """NegLabel's negative labels for ``net`` (its ``class_names`` are the ID classes).

    ``fraction > 0`` keeps that fraction of each pool instead of ``n_labels`` in all
    (:func:`~.mining.fraction_budget`). ``labels_file`` (a file from :func:`export_labels`)
    bypasses mining. Otherwise the list is
    mined once per (model identity, class names, corpus, parameters) and cached.
    """
    if labels_file:
        labels = import_labels(labels_file)
        log.info("NegLabel: %d negative labels imported from %s", len(labels), labels_file)
        return labels
    nouns, adjectives = limited_corpus(*wordnet_corpus(tuple(exclude_lexnames)), corpus_limit)
    params = {"n_labels": n_labels, "quantile": quantile, "id_template": id_template,
              "noun_template": noun_template, "adj_template": adj_template}
    if fraction > 0:   # the key of a default (count-rule) list is unchanged
        params = {**params, "n_labels": 0, "fraction": fraction}
    key = cache_key(net.identity, net.class_names, nouns, adjectives, params)
    labels = cached_labels(key)
    if labels is None:
        labels = mine_negative_labels(net, nouns, adjectives, n_labels, quantile, id_template,
                                      noun_template, adj_template, fraction)
        labels.meta = {"model": net.identity, "n_classes": len(net.class_names),
                       "candidates": f"{len(nouns)} nouns, {len(adjectives)} adjectives",
                       "excluded_lexnames": ",".join(exclude_lexnames), **params}
        store_labels(key, labels)
        log.info("NegLabel: mined %d nouns + %d adjectives (cache key %s)", len(labels.nouns),
                 len(labels.adjectives), key)
    return labels
