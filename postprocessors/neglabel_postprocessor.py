"""NegLabel as an OpenOOD postprocessor (name ``neglabel``).

Score: :func:`openood_immuno.scores.grouped.negative_label_score` over the labels of
:func:`openood_immuno.neglabel.negative_labels`.
"""
from __future__ import annotations

from openood_immuno.neglabel import (ADJ_TEMPLATE, ID_TEMPLATE, NEGLABEL_EXCLUDED_LEXNAMES,
                                     NOUN_TEMPLATE, negative_labels)
from openood_immuno.postprocessor_base import ImmunoPostprocessor
from openood_immuno.scores.grouped import negative_label_score

NEGLABEL_DEFAULTS = {
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


class NegLabelPostprocessor(ImmunoPostprocessor):
    """S = mean over K groups of the ID softmax mass of ``[ID ; group_k]`` (Jiang et al., 2024)."""

    method = "neglabel"
    defaults = NEGLABEL_DEFAULTS

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self._bank_args = None
        self._build_bank()
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self._build_bank()

    def _build_bank(self) -> None:
        """(Re)build the ID and negative text features when a mining parameter changed."""
        bank_args = {k: self.args[k] for k in _BANK_PARAMS}
        if bank_args == getattr(self, "_bank_args", None):
            return
        a = self.args
        self.neg_labels = negative_labels(
            self.net, int(a["n_neg_labels"]), float(a["quantile"]), a["id_template"],
            a["noun_template"], a["adj_template"], tuple(a["exclude_lexnames"]),
            int(a["corpus_limit"]), a["neg_labels_file"])
        self.id_text = self.net.encode_text(self.net.class_names, (a["id_template"],))
        self.neg_text = self.neg_labels.encode(self.net, a["noun_template"], a["adj_template"])
        self._bank_args = bank_args

    def base_score(self, features):
        """``(pred, S_NegLabel)`` for unit image features ``[B, d]``."""
        a = self.args
        return negative_label_score(features, self.id_text, self.neg_text, float(a["logit_scale"]),
                                    "neglabel", int(a["n_groups"]), seed=int(a["group_seed"]))

    def score_features(self, features, image_paths=None):
        return self.base_score(features)
