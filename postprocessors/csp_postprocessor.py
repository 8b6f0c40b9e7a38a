"""CSP as an OpenOOD postprocessor (name ``csp``): :class:`openood_immuno.methods.csp.CSPScorer`.

Score: :func:`openood_immuno.scores.csp.csp_score` over the labels of
:func:`openood_immuno.methods.csp.csp_labels`.
"""
from __future__ import annotations

from openood_immuno.methods.csp import CSPParams, CSPScorer
from openood_immuno.postprocessors.base import ScorerPostprocessor


class CSPPostprocessor(ScorerPostprocessor):
    """S = NegLabel's grouped ID softmax mass over nouns + conjugated adjectives (Chen et al., 2024)."""

    method = "csp"
    params_class = CSPParams
    scorer_type = CSPScorer

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)
