"""Immuno-VLM's Discriminative Immunity Score (DIS), Sec. 3.6 of the paper.

For a unit image feature ``z`` after the rejection adapter (``z = g(x)``; ``g`` is the
identity for the zero-shot variant), ID prototypes ``mu_c`` and filtered antibody
embeddings ``a`` (all unit vectors):

    S_self(z)    = max_c cos(z, mu_c)                       (self recognition)
    S_nonself(z) = max_a cos(z, a)                          (non-self recognition)
    DIS(z)       = S_self(z) - lambda * S_nonself(z)        (higher = more ID)
    pred(z)      = argmax_c cos(z, mu_c)
"""
from __future__ import annotations

import torch


def _check(features: torch.Tensor, bank: torch.Tensor, what: str) -> None:
    if features.dim() != 2 or bank.dim() != 2:
        raise ValueError(f"expected 2-D features [B, d] and {what} [N, d], got "
                         f"{tuple(features.shape)} and {tuple(bank.shape)}")
    if features.shape[1] != bank.shape[1]:
        raise ValueError(f"feature dimension mismatch: images {features.shape[1]} vs {what} "
                         f"{bank.shape[1]}: use embeddings of the same CLIP model")
    if bank.shape[0] == 0:
        raise ValueError(f"no {what}: S needs at least one (did every antibody fail the "
                         "band-pass filter? widen delta_low/delta_high)")


def self_score(features: torch.Tensor, prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S_self)``: the nearest prototype and its cosine."""
    _check(features, prototypes, "prototypes")
    s_self, pred = (features.float() @ prototypes.float().T).max(dim=1)
    return pred, s_self


def nonself_score(features: torch.Tensor, antibodies: torch.Tensor) -> torch.Tensor:
    """``S_nonself``: the cosine to the nearest antibody."""
    _check(features, antibodies, "antibodies")
    return (features.float() @ antibodies.float().T).max(dim=1).values


def dis_score(features: torch.Tensor, prototypes: torch.Tensor, antibodies: torch.Tensor,
              lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, DIS)`` with ``DIS = S_self - lam * S_nonself``."""
    if lam < 0:
        raise ValueError(f"lambda must be >= 0 (it weighs the non-self penalty), got {lam}")
    pred, s_self = self_score(features, prototypes)
    return pred, s_self - lam * nonself_score(features, antibodies)
