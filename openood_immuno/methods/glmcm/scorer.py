"""The fitted GL-MCM scorer of a CLIP net: its class prototypes and S_GL."""
from __future__ import annotations

from typing import Optional

import torch

from openood_immuno.scores.glmcm import glmcm_score
from .params import GLMCMParams


class GLMCMScorer:
    """``fit(net)`` encodes the ID prompts; ``score(global, local) -> (pred, S_GL)``."""

    def __init__(self, params: GLMCMParams):
        self.params = params
        self.class_text = None
        self._fitted_on = None

    def fit(self, net, reuse: Optional["GLMCMScorer"] = None) -> "GLMCMScorer":
        """Encode the prompts, or take those of ``reuse`` (same net, same ``templates``)."""
        if (reuse is not None and reuse._fitted_on == net.identity
                and reuse.params.templates == self.params.templates):
            self.class_text = reuse.class_text
        else:
            self.class_text = net.encode_text(net.class_names, self.params.templates)
        self._fitted_on = net.identity
        return self

    def score(self, features: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.class_text is None:
            raise RuntimeError("GL-MCM scorer used before fit(): call fit(net) first")
        device = self.class_text.device
        return glmcm_score(features.to(device), local.to(device), self.class_text, self.params.T,
                           self.params.lambda_local)
