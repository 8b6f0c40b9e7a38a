"""NegRefine's score: NegLabel's grouped score plus the multi-matching-aware score.

Ansari et al., "NegRefine: Refining Negative Label-Based Zero-Shot OOD Detection", ICCV 2025
(arXiv 2507.09795); code ah-ansari/NegRefine (commit 72e4b82d8d48), ``CLIPood.detection_score``
in ``src/clip_ood.py``. With logits ``z_i = s cos(v, t_i)`` for the C ID classes and
``u_j = s cos(v, n_j)`` for the M negatives (s = 100):

    S_NL(x) = (1/K) sum_k sum_{i<=C} softmax([z_ID ; u_{G_k}])_i        (NegLabel's, K = 100)

    P = the k_pos = min(5, C) ID classes of largest z_i,  N = the k_neg = 5 negatives of largest u_j
    m_{p,n} = s cos(v, e(p "and" n))       e: the text feature of "<class p> and <negative n>"
    S_MM(x) = max_{p in P, n in N}  exp(m_{p,n}) / (exp(m_{p,n}) + exp(u_n))
            = max_{p, n}  sigmoid(m_{p,n} - u_n)

    S(x) = S_NL(x) + w S_MM(x),   w = 2

An image matching an ID class *and* a negative (a dog on a sofa) scores high on "dog and sofa"
while "sofa" alone scores high too: S_MM stays near 1 where NegLabel's score alone would call
the image OOD. pred = arg-max over the ID classes.
"""
from __future__ import annotations

import torch

from .grouped import negative_label_score


def top_matches(image_features: torch.Tensor, id_text: torch.Tensor, neg_text: torch.Tensor,
                logit_scale: float, k_pos: int, k_neg: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pos_idx [B, min(k_pos, C)], neg_idx [B, k_neg], u_N [B, k_neg])``: each image's top ID
    classes and top negatives (largest logit first) and the negatives' logits."""
    if k_neg > neg_text.shape[0]:
        raise ValueError(f"k_neg={k_neg} exceeds the {neg_text.shape[0]} negative labels: lower k_neg")
    feats = image_features.float()
    pos = logit_scale * feats @ id_text.float().T
    neg = logit_scale * feats @ neg_text.float().T
    pos_idx = torch.topk(pos, min(k_pos, id_text.shape[0]), dim=1).indices
    u_top, neg_idx = torch.topk(neg, k_neg, dim=1)
    return pos_idx, neg_idx, u_top


def multi_matching_score(image_features: torch.Tensor, pair_text: torch.Tensor, neg_logits: torch.Tensor,
                         logit_scale: float = 100.0) -> torch.Tensor:
    """``S_MM`` [B] from unit pair features ``[B, P, N, d]`` and the logits ``u_n`` [B, N] of
    the N negatives the pairs' second halves name (in that order)."""
    if pair_text.ndim != 4 or pair_text.shape[0] != image_features.shape[0] \
            or pair_text.shape[2] != neg_logits.shape[1]:
        raise ValueError(f"pair_text must be [B, P, N, d] with B = {image_features.shape[0]} images and "
                         f"N = {neg_logits.shape[1]} negatives, got {tuple(pair_text.shape)}")
    m = logit_scale * torch.einsum("bd,bpnd->bpn", image_features.float(), pair_text.float())
    return torch.sigmoid(m - neg_logits.float()[:, None, :]).flatten(1).amax(dim=1)


def negrefine_score(image_features: torch.Tensor, id_text: torch.Tensor, neg_text: torch.Tensor,
                    pair_text: torch.Tensor, logit_scale: float = 100.0, n_groups: int = 100,
                    seed: int = 0, k_pos: int = 5, k_neg: int = 5, weight: float = 2.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S_NL + w S_MM)``; ``pair_text`` [B, P, N, d] holds the features of "<p> and <n>"
    for the classes and negatives of :func:`top_matches` (same order)."""
    pred, s_nl = negative_label_score(image_features, id_text, neg_text, logit_scale, "neglabel",
                                      n_groups, seed=seed)
    feats = image_features.float().to(id_text.device)
    _, _, u_top = top_matches(feats, id_text, neg_text.to(id_text.device), logit_scale, k_pos, k_neg)
    return pred, s_nl + weight * multi_matching_score(feats, pair_text.to(id_text.device), u_top,
                                                      logit_scale)
