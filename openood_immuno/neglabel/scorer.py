"""The NegLabel scorer of a CLIP net: its text banks (rebuilt when a mining parameter changes)
and S_NegLabel (:func:`openood_immuno.scores.grouped.negative_label_score`, NegLabel grouping)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..scores.grouped import negative_label_score
from .corpus import NEGLABEL_EXCLUDED_LEXNAMES
from .mining import ADJ_TEMPLATE, ID_TEMPLATE, NOUN_TEMPLATE
from .select import negative_labels

NEGLABEL_DEFAULTS: Mapping[str, Any] = {
    "n_neg_labels": 10_000,
    "quantile": 0.95,
    "id_template": ID_TEMPLATE,
    "noun_template": NOUN_TEMPLATE,
    "adj_template": ADJ_TEMPLATE,
    "exclude_lexnames": list(NEGLABEL_EXCLUDED_LEXNAMES),
    "corpus_limit": 0,
    "neg_labels_file": "",
    "logit_scale": 100.0,
    "n_groups": 100,
    "group_seed": 0,
}
_BANK_PARAMS = ("n_neg_labels", "quantile", "id_template", "noun_template", "adj_template",
                "exclude_lexnames", "corpus_limit", "neg_labels_file")


class NegLabelScorer:
    """``prepare(net, args)`` builds ``id_text`` [C, d] and ``neg_text`` [M, d]; ``score`` scores."""

    def __init__(self):
        self._bank_args = None
        self.labels = None
        self.id_text = self.neg_text = None

    def prepare(self, net, args: Mapping[str, Any]) -> None:
        bank_args = {k: args[k] for k in _BANK_PARAMS}
        if self._bank_args == (net.identity, bank_args):
            return
        self.labels = negative_labels(
            net, int(args["n_neg_labels"]), float(args["quantile"]), args["id_template"],
            args["noun_template"], args["adj_template"], tuple(args["exclude_lexnames"]),
            int(args["corpus_limit"]), args["neg_labels_file"])
        self.id_text = net.encode_text(net.class_names, (args["id_template"],))
        self.neg_text = self.labels.encode(net, args["noun_template"], args["adj_template"])
        self._bank_args = (net.identity, bank_args)

    def score(self, features: torch.Tensor, args: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, S_NegLabel)`` for unit image features ``[B, d]``."""
        if self.id_text is None:
            raise RuntimeError("NegLabel scorer used before fit(): call fit(net, id_features) first")
        return negative_label_score(features, self.id_text, self.neg_text, float(args["logit_scale"]),
                                    "neglabel", int(args["n_groups"]), seed=int(args["group_seed"]))
