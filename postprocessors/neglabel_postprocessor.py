"""NegLabel as an OpenOOD postprocessor (name ``neglabel``): :class:`openood_immuno.methods.neglabel.NegLabelScorer`.

Score: :func:`openood_immuno.scores.grouped.negative_label_score` over the labels of
:func:`openood_immuno.methods.neglabel.negative_labels`.
"""
from __future__ import annotations

from openood_immuno.methods.neglabel import NegLabelParams, NegLabelScorer
from openood_immuno.postprocessors.base import ScorerPostprocessor


class NegLabelPostprocessor(ScorerPostprocessor):
    """S = mean over K groups of the ID softmax mass of ``[ID ; group_k]`` (Jiang et al., 2024)."""

    method = "neglabel"
    params_class = NegLabelParams
    scorer_type = NegLabelScorer

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)
