"""The fitted GL-MCM scorer of a CLIP net: MCM's class prototypes (its global term) and S_GL."""
from __future__ import annotations

import torch

from openood_immuno.methods.mcm.scorer import MCMScorer
from openood_immuno.scores.glmcm import glmcm_score


class GLMCMScorer(MCMScorer):
    """MCM's ``fit(net)`` (the ID prompts of ``params.templates``); ``score(global, local) -> (pred, S_GL)``."""

    def score(self, features: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.class_text is None:
            raise RuntimeError("GL-MCM scorer used before fit(): call fit(net) first")
        device = self.class_text.device
        return glmcm_score(features.to(device), local.to(device), self.class_text, self.params.T,
                           self.params.lambda_local)
