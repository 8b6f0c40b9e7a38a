"""Maximum Concept Matching (MCM).

Ming et al., "Delving into Out-of-Distribution Detection with Vision-Language
Representations", NeurIPS 2022, Eq. (3):

    S_MCM(x) = max_i  exp(cos(v, t_i) / T) / sum_j exp(cos(v, t_j) / T)

with ``v`` the unit image feature and ``t_i`` the unit text feature of ID class ``i``. The
official code applies T = 1 to the raw cosine (no CLIP logit scale).
"""
from __future__ import annotations

import torch


def mcm_score(image_features: torch.Tensor, class_text_features: torch.Tensor,
              temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S_MCM)`` for unit features ``[B, d]`` and class prototypes ``[C, d]``."""
    if image_features.shape[-1] != class_text_features.shape[-1]:
        raise ValueError(f"feature dimension mismatch: images {image_features.shape[-1]} vs "
                         f"text {class_text_features.shape[-1]}: use features of the same CLIP model")
    if temperature <= 0:
        raise ValueError(f"MCM temperature must be > 0, got {temperature}")
    cos = image_features.float() @ class_text_features.float().T
    probs = torch.softmax(cos / temperature, dim=-1)
    conf, pred = probs.max(dim=-1)
    return pred, conf
