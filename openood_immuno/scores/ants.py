"""ANTS scores over an adaptive negative bank (Zhu et al., "ANTS: Shaping the Adaptive Negative
Textual Space by MLLM for OOD Detection").

    S_space(x) = grouped ID mass of logit_scale * cos(v, [t_ID ; bank])     (space = ens | vsnl)

grouped as in the ANTS code (:func:`grouped_id_mass` with ``grouping='ants'``: group size fixed,
a bank of at most ``group_size`` rows is one full softmax). Before a bank exists the score
falls back to the NegLabel score S_base.

The "balanced" variant the ANTS code uses to estimate the adaptive weight scores with group size
= C (the number of ID classes), the VSNL bank repeated ``repeats`` times first.
"""
from __future__ import annotations

from typing import Optional

import torch

from .grouped import negative_label_score


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
