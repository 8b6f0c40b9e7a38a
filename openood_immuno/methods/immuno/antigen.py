"""Antigen profiling (Immuno-VLM Phase 1, Thm 3.4): class prototypes and vMF concentrations.

Each ID class is modelled as a von Mises-Fisher distribution ``vMF(mu_c, kappa_c)`` on the
unit sphere. With ``t_c`` the class's text embedding and ``m_c`` the normalised mean of its
image features, the prototype is the vMF maximum-likelihood mean direction constrained to
the cap of angle ``theta`` around the text anchor (our reading of Thm 3.4):

    mu_c = argmax_{mu : angle(mu, t_c) <= theta} mu . m_c
         = slerp(t_c, m_c, psi / phi),  phi = angle(t_c, m_c),  psi = min(phi, theta)
         = (sin(phi - psi) t_c + sin(psi) m_c) / sin(phi)

i.e. the point of the geodesic from ``t_c`` to ``m_c`` at angle ``psi`` from ``t_c``. Without
images (or when ``m_c`` is antipodal to ``t_c``, where the geodesic is undefined)
``mu_c = t_c``.

kappa: the MLE with a known mean solves ``A_d(kappa) = R``, ``R = mean_i cos(x_i, mu_c)``; we
use Banerjee et al.'s approximation (JMLR 2005, Eq. 4.4):

    kappa ~= R (d - R^2) / (1 - R^2).

Classes with fewer than ``min_samples`` images use the pooled ``R`` over all classes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_EPS = 1e-6


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m [C, d], counts [C])``: normalised mean image feature of each class (zero rows where
    a class has no image). Labels outside ``[0, C)`` raise."""
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) to build class prototypes; got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    # one-hot matmul, not index_add_: the latter is non-deterministic on CUDA, and the adapter
    # cache is keyed by the bytes of what is computed here
    onehot = F.one_hot(labels.to(features.device), num_classes).float()
    sums = onehot.T @ features.float()
    counts = torch.bincount(labels, minlength=num_classes).to(features.device)
    return F.normalize(sums, dim=1), counts


def geodesic_prototypes(text: torch.Tensor, visual_mean: torch.Tensor, counts: torch.Tensor,
                        theta: float) -> torch.Tensor:
    """``mu_c`` on the geodesic from ``t_c`` towards ``m_c``, at most ``theta`` radians from ``t_c``."""
    if not 0 <= theta <= math.pi:
        raise ValueError(f"theta must be an angle in [0, pi] radians, got {theta}")
    t = F.normalize(text.float(), dim=1)
    m = visual_mean.float().to(t.device)
    phi = torch.acos((t * m).sum(1).clamp(-1.0, 1.0))
    psi = torch.clamp(phi, max=theta)
    sin_phi = torch.sin(phi)
    ok = (counts.to(t.device) > 0) & (sin_phi > _EPS)
    safe = torch.where(ok, sin_phi, torch.ones_like(sin_phi))
    mu = (torch.sin(phi - psi) / safe)[:, None] * t + (torch.sin(psi) / safe)[:, None] * m
    return torch.where(ok[:, None], F.normalize(mu, dim=1), t)  # phi ~ 0: m ~ t, so t is exact


def vmf_kappa(mean_cos: torch.Tensor, dim: int) -> torch.Tensor:
    """Banerjee's approximation ``R (d - R^2) / (1 - R^2)``, ``R`` clamped to ``[1e-4, 1 - 1e-4]``."""
    r = mean_cos.double().clamp(1e-4, 1 - 1e-4)
    return (r * (dim - r ** 2) / (1 - r ** 2)).float()


def estimate_kappa(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                   min_samples: int = 5) -> tuple[torch.Tensor, int]:
    """``(kappa [C], n_pooled)``: per-class vMF concentration around ``mu_c``; the classes with
    fewer than ``min_samples`` images (``n_pooled`` of them) get the pooled estimate."""
    if features.shape[0] == 0:
        raise ValueError("estimating kappa needs at least one image feature")
    num_classes, dim = prototypes.shape
    labels = labels.long().to(prototypes.device)
    cos = (features.float().to(prototypes.device) * prototypes[labels]).sum(1)
    sums = F.one_hot(labels, num_classes).float().T @ cos
    counts = torch.bincount(labels, minlength=num_classes)
    pooled = cos.mean()
    own = counts >= max(1, min_samples)
    r = torch.where(own, sums / counts.clamp(min=1), pooled)
    return vmf_kappa(r, dim), int((~own).sum())
