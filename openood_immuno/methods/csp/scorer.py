"""The fitted CSP scorer of a CLIP net: its text banks and :func:`openood_immuno.scores.csp.csp_score`."""
from __future__ import annotations

from typing import Optional

import torch

from openood_immuno.scores.csp import csp_score
from .params import CSPParams
from .select import csp_labels


class CSPScorer:
    """``fit(net)`` builds ``id_text`` [C, d] and ``neg_text`` [M, d] (nouns, then phrases)."""

    def __init__(self, params: CSPParams):
        self.params = params
        self.labels = None
        self.id_text = self.neg_text = None
        self._fitted_on = None

    def fit(self, net, reuse: Optional["CSPScorer"] = None) -> "CSPScorer":
        """Build the banks, or take those of ``reuse`` (same net, same :attr:`CSPParams.BANK`)."""
        p = self.params
        if (reuse is not None and reuse._fitted_on == net.identity
                and not p.changed(reuse.params, CSPParams.BANK)):
            self.labels, self.id_text, self.neg_text = reuse.labels, reuse.id_text, reuse.neg_text
        else:
            self.labels = csp_labels(net, p)
            self.id_text = net.encode_text(net.class_names, p.id_templates)
            parts = [net.encode_text(words, templates) for words, templates in
                     ((self.labels.nouns, p.noun_templates), (self.labels.adjectives, p.adj_templates))
                     if words]
            self.neg_text = torch.cat(parts)
        self._fitted_on = net.identity
        return self

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, S_CSP)`` for unit image features ``[B, d]``."""
        if self.id_text is None:
            raise RuntimeError("CSP scorer used before fit(): call fit(net) first")
        p = self.params
        return csp_score(features, self.id_text, self.neg_text, p.logit_scale, p.n_groups, p.group_seed)
