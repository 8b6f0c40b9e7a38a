"""CSP's score: NegLabel's grouped ID softmax mass over the CSP negatives.

Chen et al., "Conjugated Semantic Pool Improves OOD Detection with Pre-trained Vision-Language
Models", NeurIPS 2024; code MengyuanChen21/NeurIPS2024-CSP, ``ScalableClassifier.grouping`` in
``mmcls/models/ood/clip_ood.py`` (t = 1, ngroup = 100, random_permute = True, seed 0) over the
logits of ``CLIPScalableClassifier.simple_test`` (100 x cos). With ID logits ``z_i = s cos(v, t_i)``
and negative logits (nouns, then conjugated adjective phrases) permuted once and split into
K groups ``G_k`` (the last ``M mod K`` dropped first):

    S_CSP(x) = (1/K) sum_k  sum_{i<=C} softmax([z_ID ; z_{G_k}])_i
             = (1/K) sum_k  sigmoid( LSE(z_ID) - LSE(z_{G_k}) )

This is :func:`openood_immuno.scores.grouped.negative_label_score` with ``grouping='neglabel'``
(the CSP code's ``grouping`` is NegLabel's, line for line); pred = arg-max over ID classes.
"""
from __future__ import annotations

import torch

from .grouped import negative_label_score


def csp_score(image_features: torch.Tensor, id_text: torch.Tensor, neg_text: torch.Tensor,
              logit_scale: float = 100.0, n_groups: int = 100, seed: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S_CSP)`` for unit image features ``[B, d]``, ID text ``[C, d]``, negatives ``[M, d]``."""
    return negative_label_score(image_features, id_text, neg_text, logit_scale, "neglabel",
                                n_groups, seed=seed)
