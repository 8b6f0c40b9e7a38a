"""MCM as an OpenOOD postprocessor (name ``mcm``): :class:`openood_immuno.methods.mcm.MCMScorer`."""
from __future__ import annotations

from openood_immuno.methods.mcm import MCMParams, MCMScorer
from openood_immuno.postprocessors.base import ImmunoPostprocessor


class MCMPostprocessor(ImmunoPostprocessor):
    """S = max_i softmax(cos(v, t_i) / T) over the ID prompts ``templates`` (Ming et al., 2022)."""

    method = "mcm"
    params_class = MCMParams

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self.scorer = MCMScorer(self.params).fit(net)
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self.scorer = MCMScorer(self.params).fit(self.net, reuse=self.scorer)

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)
