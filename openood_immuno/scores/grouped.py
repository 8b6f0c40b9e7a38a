"""Grouped negative-label score (NegLabel's grouping strategy, and the ANTS code's variant).

Jiang et al., "Negative Label Guided OOD Detection with Pretrained Vision-Language Models",
ICLR 2024, Sec. 3.3 (grouping strategy). With ID logits ``z_i`` (i = 1..C) and negative logits
split into groups ``G_1..G_K``:

    S(x) = (1/K) sum_k  sum_{i<=C} softmax([z_ID ; z_{G_k}])_i
         = (1/K) sum_k  sigmoid( LSE(z_ID) - LSE(z_{G_k}) )

(the second line is the same number, computed without materialising K softmaxes).

How the groups are formed (the two reference codes differ):

* ``grouping='neglabel'`` (tmlr-group/NegLabel ``ScalableClassifier.grouping``): K = ``n_groups``
  is fixed; the last ``n mod K`` negatives are dropped, the rest permuted with a fixed seed and
  split into K contiguous groups of ``n // K``.
* ``grouping='ants'`` (ZhuWenjie98/ANTS ``grouped_negative_score`` / ``score_with_negative_features``):
  the group *size* is fixed; K = max(1, n // group_size), the last ``n mod K`` negatives are
  dropped, the kept ones permuted once with a fixed seed and split into K contiguous groups; a
  bank of at most ``group_size`` negatives gets one full softmax (no permutation needed).

For n = 10,000 negatives and 100 groups (size 100) the two coincide. The permutation uses a
private CPU ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), which is the
ANTS code's generator; NegLabel's code draws it on CUDA, a sequence a CPU run cannot reproduce.
"""
from __future__ import annotations

from functools import lru_cache

import torch

GROUPINGS = ("neglabel", "ants")


@lru_cache(maxsize=64)
def _permutation(n: int, seed: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """The fixed permutation, drawn on the CPU and kept on ``device`` (no copy per batch)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return torch.randperm(n, generator=generator).to(device)


def group_layout(n_neg: int, grouping: str = "neglabel", n_groups: int = 100,
                 group_size: int = 100) -> tuple[int, int]:
    """``(K, kept)``: number of groups and how many negatives are kept (the first ``kept``).

    Raises ValueError with the fix when the parameters cannot form a group.
    """
    if n_neg <= 0:
        raise ValueError("grouped score needs at least one negative label: mine or import "
                         "negative labels first")
    if grouping == "neglabel":
        if n_groups <= 0:
            raise ValueError(f"n_groups must be >= 1, got {n_groups}")
        if n_groups > n_neg:
            raise ValueError(f"n_groups={n_groups} exceeds the {n_neg} negative labels: lower "
                             f"n_groups or mine more labels (n_neg_labels)")
        k = n_groups
    elif grouping == "ants":
        if group_size <= 0:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        k = max(1, n_neg // group_size)
    else:
        raise ValueError(f"unknown grouping {grouping!r}: use one of {GROUPINGS}")
    return k, n_neg - n_neg % k


def grouped_id_mass(logits: torch.Tensor, num_id: int, grouping: str = "neglabel",
                    n_groups: int = 100, group_size: int = 100, seed: int = 0) -> torch.Tensor:
    """Mean over groups of the ID softmax mass; ``logits`` is ``[B, C + n]`` = ``[ID ; negatives]``.

    Returns ``[B]`` scores in (0, 1), higher = more ID.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [batch, classes], got shape {tuple(logits.shape)}")
    if not 0 < num_id < logits.shape[1]:
        raise ValueError(f"num_id={num_id} must be in [1, {logits.shape[1] - 1}] for logits with "
                         f"{logits.shape[1]} columns (ID classes first, then negatives)")
    logits = logits.float()
    lse_pos = torch.logsumexp(logits[:, :num_id], dim=1, keepdim=True)
    return grouped_mass_given_id_lse(lse_pos, logits[:, num_id:], grouping, n_groups, group_size, seed)


def grouped_mass_given_id_lse(lse_pos: torch.Tensor, neg: torch.Tensor, grouping: str = "neglabel",
                              n_groups: int = 100, group_size: int = 100, seed: int = 0) -> torch.Tensor:
    """:func:`grouped_id_mass` from ``LSE(z_ID)`` [B, 1] and the negative logits ``neg`` [B, n]:
    several negative banks can share one ID log-sum-exp."""
    k, kept = group_layout(neg.shape[1], grouping, n_groups, group_size)
    neg = neg[:, :kept]
    if k > 1:
        neg = neg[:, _permutation(kept, seed, neg.device)]
    lse_neg = torch.logsumexp(neg.reshape(neg.shape[0], k, kept // k), dim=2)  # [B, K]
    return torch.sigmoid(lse_pos - lse_neg).mean(dim=1)


def negative_label_score(image_features: torch.Tensor, id_text: torch.Tensor, neg_text: torch.Tensor,
                         logit_scale: float = 100.0, grouping: str = "neglabel", n_groups: int = 100,
                         group_size: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S)`` with logits ``logit_scale * cos`` against ``[id_text ; neg_text]``.

    ``pred`` is the arg-max over the ID classes only.
    """
    if image_features.shape[-1] != id_text.shape[-1] or neg_text.shape[-1] != id_text.shape[-1]:
        raise ValueError(f"feature dimension mismatch: images {image_features.shape[-1]}, ID text "
                         f"{id_text.shape[-1]}, negatives {neg_text.shape[-1]}: use one CLIP model")
    feats = image_features.float().to(id_text.device)
    pos = logit_scale * feats @ id_text.float().T
    neg = logit_scale * feats @ neg_text.float().to(id_text.device).T
    score = grouped_id_mass(torch.cat([pos, neg], dim=1), id_text.shape[0], grouping, n_groups,
                            group_size, seed)
    return pos.argmax(dim=1), score
