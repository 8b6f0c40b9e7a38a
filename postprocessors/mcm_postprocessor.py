"""MCM as an OpenOOD postprocessor (name ``mcm``). Score: :func:`openood_immuno.scores.mcm.mcm_score`."""
from __future__ import annotations

from openood_immuno.postprocessor_base import ImmunoPostprocessor
from openood_immuno.scores.mcm import mcm_score


class MCMPostprocessor(ImmunoPostprocessor):
    """S = max_i softmax(cos(v, t_i) / T) over the ID prompts ``templates`` (Ming et al., 2022)."""

    method = "mcm"
    defaults = {"T": 1.0, "templates": ["a photo of a {}."]}

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self.class_text = net.encode_text(net.class_names, self.args["templates"])
        return self

    def score_features(self, features, image_paths=None):
        return mcm_score(features.to(self.class_text.device), self.class_text, float(self.args["T"]))
