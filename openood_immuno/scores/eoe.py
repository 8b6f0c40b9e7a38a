"""EOE's score: ID confidence minus a penalty for the most likely envisioned outlier.

Cao et al., "Envisioning Outlier Exposure by Large Language Models for Out-of-Distribution
Detection", ICML 2024, Eq. 3; code tmlr-group/EOE ``utils/detection_util.py``
(``get_ood_scores_clip``, ``score == 'EOE'``, ``score_ablation == 'EOE'``). With ``v`` the unit
image feature, ``t_1..t_C`` the ID class features and ``o_1..o_N`` the envisioned outlier
features (all unit norm), and ``p = softmax([cos(v, t_1..t_C) ; cos(v, o_1..o_N)] / T)``:

    S_EOE(x) = max_{i<=C} p_i  -  beta * max_{j>C} p_j          (T = 1, beta = 0.25)

higher = more ID (the authors negate it as an OOD score). pred = arg-max over the ID classes.
With no outlier (N = 0) the penalty is 0 and the score is MCM's.
"""
from __future__ import annotations

import torch


def eoe_score(image_features: torch.Tensor, id_text: torch.Tensor, outlier_text: torch.Tensor,
              temperature: float = 1.0, beta: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S_EOE)`` for features ``[B, d]``, ID text ``[C, d]`` and outlier text ``[N, d]``."""
    if image_features.shape[-1] != id_text.shape[-1] or outlier_text.shape[-1] != id_text.shape[-1]:
        raise ValueError(f"feature dimension mismatch: images {image_features.shape[-1]}, ID text "
                         f"{id_text.shape[-1]}, outliers {outlier_text.shape[-1]}: use one CLIP model")
    if temperature <= 0:
        raise ValueError(f"EOE temperature must be > 0, got {temperature}")
    feats = image_features.float().to(id_text.device)
    cos = feats @ torch.cat([id_text.float(), outlier_text.float().to(id_text.device)]).T
    p = torch.softmax(cos / temperature, dim=1)
    num_id = id_text.shape[0]
    id_conf, pred = p[:, :num_id].max(dim=1)
    if p.shape[1] == num_id:
        return pred, id_conf
    return pred, id_conf - beta * p[:, num_id:].max(dim=1).values
