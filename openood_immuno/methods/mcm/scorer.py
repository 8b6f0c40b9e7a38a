"""The fitted MCM scorer of a CLIP net: its class prototypes and S_MCM."""
from __future__ import annotations

from typing import Optional

import torch

from openood_immuno.scores.mcm import mcm_score
from .params import MCMParams


class MCMScorer:
    """``fit(net)`` encodes the ID prompts; ``score(features) -> (pred, S_MCM)``."""

    def __init__(self, params: MCMParams):
        self.params = params
        self.class_text = None
        self._fitted_on = None

    def fit(self, net, reuse: Optional["MCMScorer"] = None) -> "MCMScorer":
        """Encode the prompts, or take those of ``reuse`` (same net, same ``templates``)."""
        if (reuse is not None and reuse._fitted_on == net.identity
                and reuse.params.templates == self.params.templates):
            self.class_text = reuse.class_text
        else:
            self.class_text = net.encode_text(net.class_names, self.params.templates)
        self._fitted_on = net.identity
        return self

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.class_text is None:
            raise RuntimeError("MCM scorer used before fit(): call fit(net) first")
        return mcm_score(features.to(self.class_text.device), self.class_text, self.params.T)
