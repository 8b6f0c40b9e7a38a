"""MCM as an OpenOOD postprocessor (name ``mcm``): :class:`openood_immuno.methods.mcm.MCMScorer`."""
from __future__ import annotations

from openood_immuno.methods.mcm import MCMParams, MCMScorer
from openood_immuno.postprocessors.base import ScorerPostprocessor


class MCMPostprocessor(ScorerPostprocessor):
    """S = max_i softmax(cos(v, t_i) / T) over the ID prompts ``templates`` (Ming et al., 2022)."""

    method = "mcm"
    params_class = MCMParams
    scorer_type = MCMScorer

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)
