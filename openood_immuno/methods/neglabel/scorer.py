"""The fitted NegLabel scorer of a CLIP net: its text banks and S_NegLabel
(:func:`openood_immuno.scores.grouped.negative_label_score`, NegLabel grouping)."""
from __future__ import annotations

from typing import Optional

import torch

from openood_immuno.scores.grouped import negative_label_score
from .params import NegLabelParams
from .select import negative_labels


class NegLabelScorer:
    """``fit(net)`` builds ``id_text`` [C, d] and ``neg_text`` [M, d]; ``score`` scores.

    ``params`` may be any parameters with NegLabel's fields (ANTS's extend them).
    """

    def __init__(self, params: NegLabelParams):
        self.params = params
        self.labels = None
        self.id_text = self.neg_text = None
        self._fitted_on = None

    def fit(self, net, reuse: Optional["NegLabelScorer"] = None) -> "NegLabelScorer":
        """Build the banks, or take those of ``reuse`` when it was fitted on the same net with
        the same bank parameters (:attr:`NegLabelParams.BANK`)."""
        p = self.params
        if (reuse is not None and reuse._fitted_on == net.identity
                and not p.changed(reuse.params, NegLabelParams.BANK)):
            self.labels, self.id_text, self.neg_text = reuse.labels, reuse.id_text, reuse.neg_text
        else:
            self.labels = negative_labels(net, p.n_neg_labels, p.quantile, p.id_template,
                                          p.noun_template, p.adj_template, p.exclude_lexnames,
                                          p.corpus_limit, p.neg_labels_file, p.neg_fraction)
            self.id_text = net.encode_text(net.class_names, (p.id_template,))
            self.neg_text = self.labels.encode(net, p.noun_template, p.adj_template)
        self._fitted_on = net.identity
        return self

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, S_NegLabel)`` for unit image features ``[B, d]``."""
        if self.id_text is None:
            raise RuntimeError("NegLabel scorer used before fit(): call fit(net, id_features) first")
        p = self.params
        return negative_label_score(features, self.id_text, self.neg_text, p.logit_scale,
                                    "neglabel", p.n_groups, seed=p.group_seed)
