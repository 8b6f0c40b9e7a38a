"""GL-MCM as an OpenOOD postprocessor (name ``glmcm``): :class:`openood_immuno.methods.glmcm.GLMCMScorer`.

Score: :func:`openood_immuno.scores.glmcm.glmcm_score` on the global feature and the per-patch
features of the same backbone pass (``needs_local_features``).
"""
from __future__ import annotations

from openood_immuno.methods.glmcm import GLMCMParams, GLMCMScorer
from openood_immuno.postprocessors.base import ScorerPostprocessor


class GLMCMPostprocessor(ScorerPostprocessor):
    """S = max_c softmax(cos(v, t_c)/T) + lambda max_p max_c softmax(cos(l_p, t_c)/T) (Miyai et al., 2025)."""

    method = "glmcm"
    params_class = GLMCMParams
    scorer_type = GLMCMScorer
    needs_local_features = True

    def score_features(self, features, image_paths=None, local=None):
        if local is None:
            raise ValueError(f"postprocessor '{self.name}' scores global and local features: call "
                             "score_features(features, local=...) ([B, P, d] per-patch features)")
        return self.scorer.score(features, local)
