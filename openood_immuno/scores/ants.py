"""ANTS scores over an adaptive negative bank (Zhu et al., "ANTS: Shaping the Adaptive Negative
Textual Space by MLLM for OOD Detection").

    S_space(x) = grouped ID mass of logit_scale * cos(v, [t_ID ; bank])     (space = ens | vsnl)

grouped as in the ANTS code (:func:`grouped_id_mass` with ``grouping='ants'``: group size fixed,
a bank of at most ``group_size`` rows is one full softmax). Before a bank exists the score
falls back to the NegLabel score S_base.

The "balanced" variant the ANTS code uses to estimate the adaptive weight scores with group size
= C (the number of ID classes), the VSNL bank repeated ``repeats`` times first.

:func:`fused_ants_scores` returns all of them for one batch from one ID log-sum-exp and one
concatenated matmul over every negative bank.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .grouped import grouped_mass_given_id_lse, negative_label_score


def bank_score(image_features: torch.Tensor, id_text: torch.Tensor, bank: Optional[torch.Tensor],
               fallback: torch.Tensor, logit_scale: float = 100.0, group_size: int = 100,
               seed: int = 0) -> torch.Tensor:
    """S over ``[id_text ; bank]`` (ANTS grouping), or ``fallback`` when the bank is empty."""
    if bank is None or bank.shape[0] == 0:
        return fallback
    return negative_label_score(image_features, id_text, bank, logit_scale, "ants",
                                group_size=group_size, seed=seed)[1]


def balanced_bank_score(image_features: torch.Tensor, id_text: torch.Tensor,
                        bank: Optional[torch.Tensor], fallback: torch.Tensor,
                        logit_scale: float = 100.0, repeats: int = 1, seed: int = 0) -> torch.Tensor:
    """S with group size = C over the bank repeated ``repeats`` times (ANTS code's lambda input)."""
    if bank is None or bank.shape[0] == 0:
        return fallback
    return bank_score(image_features, id_text, bank.repeat(repeats, 1), fallback, logit_scale,
                      id_text.shape[0], seed)


class ANTSScores(NamedTuple):
    """The five grouped scores of one ANTS batch (``[B]`` each) and the ID arg-max ``pred``."""

    pred: torch.Tensor
    base: torch.Tensor
    ens: torch.Tensor
    vsnl: torch.Tensor
    ens_balanced: Optional[torch.Tensor]
    vsnl_balanced: Optional[torch.Tensor]


def fused_ants_scores(image_features: torch.Tensor, id_text: torch.Tensor, neg_text: torch.Tensor,
                      ens: Optional[torch.Tensor], vsnl: Optional[torch.Tensor],
                      logit_scale: float = 100.0, n_groups: int = 100, group_size: int = 100,
                      seed: int = 0, vsnl_repeats: int = 1, balanced: bool = True) -> ANTSScores:
    """All grouped scores of one ANTS batch from one ID log-sum-exp and one negative matmul.

    Equal (up to float rounding) to the separate calls

    * ``pred, base = negative_label_score(x, id_text, neg_text, logit_scale, 'neglabel', n_groups,
      seed=seed)`` (S_base, NegLabel grouping);
    * ``ens = bank_score(x, id_text, ens, base, logit_scale, group_size, seed)``, same for ``vsnl``;
    * with ``balanced``: ``balanced_bank_score(x, id_text, ens, base, logit_scale, 1, seed)`` and
      ``balanced_bank_score(x, id_text, vsnl, base, logit_scale, vsnl_repeats, seed)``
      (``None`` without ``balanced``),

    which compute ``logit_scale * x @ id_text.T`` and its log-sum-exp five times. Here the image
    features meet ``[neg_text ; ens ; vsnl]`` in one matmul; the VSNL bank repeated ``r`` times
    has the VSNL logits repeated ``r`` times, so the repeat costs no matmul.
    """
    dim = id_text.shape[-1]
    banks = [b for b in (neg_text, ens, vsnl) if b is not None]
    if image_features.shape[-1] != dim or any(b.shape[-1] != dim for b in banks):
        raise ValueError(f"feature dimension mismatch: images {image_features.shape[-1]}, ID text "
                         f"{dim}, negative banks {[b.shape[-1] for b in banks]}: use one CLIP model")
    device = id_text.device
    scaled = logit_scale * image_features.float().to(device)
    pos = scaled @ id_text.float().T
    neg = scaled @ torch.cat([b.float().to(device) for b in banks]).T
    lse_pos = torch.logsumexp(pos, dim=1, keepdim=True)
    n_base = neg_text.shape[0]
    n_ens = 0 if ens is None else ens.shape[0]
    z_base, z_ens, z_vsnl = neg[:, :n_base], neg[:, n_base:n_base + n_ens], neg[:, n_base + n_ens:]
    base = grouped_mass_given_id_lse(lse_pos, z_base, "neglabel", n_groups, seed=seed)

    def score(z: torch.Tensor, size: int) -> torch.Tensor:
        if z.shape[1] == 0:
            return base
        return grouped_mass_given_id_lse(lse_pos, z, "ants", group_size=size, seed=seed)

    num_id = id_text.shape[0]
    return ANTSScores(pos.argmax(dim=1), base, score(z_ens, group_size), score(z_vsnl, group_size),
                      score(z_ens, num_id) if balanced else None,
                      score(z_vsnl.repeat(1, vsnl_repeats), num_id) if balanced else None)
