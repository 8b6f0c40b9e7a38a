"""Global-Local Maximum Concept Matching (GL-MCM).

Miyai et al., "GL-MCM: Global and Local Maximum Concept Matching for Zero-Shot
Out-of-Distribution Detection", IJCV 2025 (arXiv 2304.04521); the authors' code
(AtsuMiyai/GL-MCM at commit 8708a08442e5650889052fd86900969fade06a1b,
``utils/detection_util.py::get_ood_scores_clip``):

    S_G(x)  = max_c  softmax_c( cos(v, t_c) / T )                       (MCM on the global feature)
    S_L(x)  = max_p max_c  softmax_c( cos(l_p, t_c) / T )               (per patch p = 1 .. P)
    S_GL(x) = S_G(x) + lambda * S_L(x)                                  higher = more ID

with ``v`` the unit global image feature, ``l_p`` the unit local feature of patch ``p``
(:mod:`openood_immuno.models.local_tokens`), ``t_c`` the unit text feature of ID class ``c``;
the softmax of each patch runs over the ID classes, the same ``T`` (authors: 1) on raw cosines
for both terms. The authors return ``-S_GL`` and negate again in their metrics; this returns
``S_GL`` (OpenOOD's convention). ``pred`` is the global argmax, as MCM's.
"""
from __future__ import annotations

import torch


def glmcm_score(global_features: torch.Tensor, local_features: torch.Tensor, class_text_features: torch.Tensor,
                temperature: float, lambda_local: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, S_GL)`` for unit global ``[B, d]``, unit local ``[B, P, d]`` (any float dtype;
    computed in float32) and class prototypes ``[C, d]``; ``T`` and ``lambda`` as the formula
    (their defaults live in :class:`~openood_immuno.methods.glmcm.params.GLMCMParams`)."""
    d = class_text_features.shape[-1]
    if global_features.ndim != 2 or local_features.ndim != 3 or global_features.shape[-1] != d \
            or local_features.shape[-1] != d or local_features.shape[0] != global_features.shape[0]:
        raise ValueError(f"GL-MCM needs global [B, {d}] and local [B, P, {d}] features of one CLIP model, got "
                         f"{tuple(global_features.shape)} and {tuple(local_features.shape)}")
    if temperature <= 0:
        raise ValueError(f"GL-MCM temperature must be > 0, got {temperature}")
    text = class_text_features.float().T
    global_probs = torch.softmax(global_features.float() @ text / temperature, dim=-1)
    s_global, pred = global_probs.max(dim=-1)
    # max_c softmax_c(z) = exp(max_c z - logsumexp_c z): one [B, P, C] buffer, read twice
    z = local_features.float() @ (text / temperature)
    s_local = (z.amax(dim=-1) - torch.logsumexp(z, dim=-1)).exp_().amax(dim=-1)
    return pred, s_global + lambda_local * s_local
