"""Immuno-VLM on tensors: prototypes -> filtered antibodies -> adapter -> DIS -> EVT.

:func:`build_scorer` is the whole method given embeddings (the postprocessors only turn
class names and antibody texts into embeddings with the CLIP net and hand them over), so
tests run the real code on synthetic geometry. :class:`ImmunoParams` holds every
hyper-parameter with its default; all of them are our choices (the paper's values were lost)
and each is a yml parameter with a sweep list (docs/immuno_vlm.md).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..features import check_features
from ..scores.immuno import dis_score
from .adapter import RejectionAdapter, VaccinationConfig, few_shot_indices, load_or_vaccinate
from .antigen import class_means, estimate_kappa, geodesic_prototypes
from .evt import EVTCalibrator
from .filtration import FilterReport, band_pass_mask

log = logging.getLogger(__name__)
ANTIBODY_SOURCES = ("bank", "gaussian_noise", "random_words")
EVT_OUTPUTS = ("hazard", "cdf")


@dataclass(frozen=True)
class ImmunoParams:
    """Hyper-parameters of the tensor pipeline (yml names; ``lam`` is the yml's ``lambda``)."""

    lam: float = 1.0                 # DIS = S_self - lambda * S_nonself
    theta_deg: float = 20.0          # prototype cap around the text embedding (degrees)
    delta_low: float = 0.55          # band-pass lower bound on cos(e(a), mu_c)
    delta_high: float = 0.92         # band-pass upper bound
    antibody_source: str = "bank"    # bank | gaussian_noise | random_words (Table-2 ablations)
    noise_sigma: float = 1.0         # gaussian_noise: a = normalise(mu_c + sigma * N(0, I/d))
    seed: int = 0
    kappa_min_samples: int = 5       # classes with fewer images use the pooled vMF kappa
    shots: int = 16                  # training images per class (0 = all)
    max_train: int = 0               # cap on training images (0 = none)
    adapter_hidden: int = 512
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-4
    beta: float = 5.0                # weight of the push term
    margin: Any = "auto"             # push hinge: cos(g(z), a) <= margin; 'auto' = quantile below
    margin_quantile: float = 0.9     # auto margin: this quantile of cos(z, a), a in A(y), frozen CLIP
    hard_k: int = 8                  # hardest antibodies overall in the push term
    evt_tail: float = 0.5            # fraction of a class's lowest validation DIS fitted
    evt_min_samples: int = 5         # fewer validation images -> pooled Weibull
    evt_output: str = "hazard"       # conf = H_pred(DIS) (hazard) or F_pred(DIS) (cdf); same ranking

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> "ImmunoParams":
        """From a postprocessor's ``args`` (keys that are not pipeline parameters are ignored)."""
        names = {f.name for f in fields(cls)}
        values = {("lam" if k == "lambda" else k): v for k, v in args.items()}
        params = cls(**{k: v for k, v in values.items() if k in names})
        if params.antibody_source not in ANTIBODY_SOURCES:
            raise ValueError(f"antibody_source must be one of {ANTIBODY_SOURCES}, got "
                             f"{params.antibody_source!r}")
        if params.margin != "auto" and not isinstance(params.margin, (int, float)):
            raise ValueError(f"margin must be a number or 'auto', got {params.margin!r}")
        if not 0 < params.margin_quantile <= 1:
            raise ValueError(f"margin_quantile must lie in (0, 1], got {params.margin_quantile}")
        if params.evt_output not in EVT_OUTPUTS:
            raise ValueError(f"evt_output must be one of {EVT_OUTPUTS}, got {params.evt_output!r}")
        return params

    def vaccination(self, margin: float) -> VaccinationConfig:
        """Training settings, with ``margin`` resolved (see :func:`auto_margin`)."""
        return VaccinationConfig(hidden=int(self.adapter_hidden), epochs=int(self.epochs),
                                 lr=float(self.lr), batch_size=int(self.batch_size),
                                 weight_decay=float(self.weight_decay), beta=float(self.beta),
                                 margin=float(margin), hard_k=int(self.hard_k), seed=int(self.seed))


def auto_margin(features: torch.Tensor, labels: torch.Tensor, antibodies: torch.Tensor,
                owner: torch.Tensor, quantile: float) -> float:
    """The ``quantile`` of ``cos(z_i, a)`` over ID training features and the antibodies of their
    own class under frozen CLIP (all antibodies when no class has any): the push then acts on
    the closest ID-antibody pairs only, whatever the cosine scale of the backbone."""
    antibodies, owner = antibodies.float(), owner.to(antibodies.device)
    labels = labels.to(antibodies.device)
    anyone_owned = bool(torch.isin(labels, owner).any())
    values = []
    for i in range(0, features.shape[0], 1024):  # chunks: no N x M matrix in memory
        cos = features[i:i + 1024].float().to(antibodies.device) @ antibodies.T
        own = owner[None, :] == labels[i:i + 1024, None]
        values.append((cos[own] if anyone_owned else cos.flatten()).cpu())
    return float(np.quantile(torch.cat(values).double().numpy(), quantile))


def gaussian_antibodies(prototypes: torch.Tensor, owner: torch.Tensor, sigma: float,
                        seed: int = 0) -> torch.Tensor:
    """Table-2 ablation: ``a = normalise(mu_owner + sigma * eps)``, ``eps ~ N(0, I/d)`` (so
    ``cos(a, mu) ~ 1 / sqrt(1 + sigma^2)``), one per antibody slot of the bank."""
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(owner.shape[0], prototypes.shape[1], generator=gen) / math.sqrt(prototypes.shape[1])
    return F.normalize(prototypes[owner.long()].cpu() + sigma * eps, dim=1).to(prototypes.device)


def check_id_features(split: str, features: torch.Tensor, labels: torch.Tensor, dim: int,
                      num_classes: int) -> None:
    """Reject ID ``split`` features of another model (dimension), broken ones (NaN/inf) and
    labels outside ``[0, num_classes)``, naming the fix."""
    check_features(features, dim, f"ID {split} features")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"{features.shape[0]} ID {split} features but labels of shape "
                         f"{tuple(labels.shape)}: one class index per feature")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"ID {split} labels must lie in [0, {num_classes}) (one per ID class), got "
                         f"[{int(labels.min())}, {int(labels.max())}]: check the {split} image list")


@dataclass
class ImmunoScorer:
    """The fitted method: ``score(features) -> (pred, conf)``."""

    prototypes: torch.Tensor
    antibodies: torch.Tensor
    owner: torch.Tensor
    lam: float
    adapter: Optional[RejectionAdapter] = None
    evt: Optional[EVTCalibrator] = None
    evt_output: str = "hazard"
    report: Optional[FilterReport] = None
    vaccination: Optional[dict] = None

    @property
    def device(self) -> torch.device:
        return self.prototypes.device

    @torch.no_grad()
    def adapt(self, features: torch.Tensor) -> torch.Tensor:
        """``g(x)`` (identity without an adapter)."""
        z = features.float().to(self.device)
        if self.adapter is None:
            return z
        if z.ndim != 2 or z.shape[1] != self.adapter.dim:
            raise ValueError(f"feature dimension mismatch: images {tuple(z.shape)} vs the rejection "
                             f"adapter's {self.adapter.dim}: use embeddings of the same CLIP model")
        return self.adapter(z)

    @torch.no_grad()
    def dis(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dis_score(self.adapt(features), self.prototypes, self.antibodies, self.lam)

    @torch.no_grad()
    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, conf)``: conf = DIS, or its EVT calibration (``H_pred`` or ``F_pred`` of DIS)."""
        pred, dis = self.dis(features)
        if self.evt is None:
            return pred, dis
        calibrate = self.evt.hazard if self.evt_output == "hazard" else self.evt.cdf
        return pred, calibrate(dis, pred).to(dis.device)


def build_scorer(text_prototypes: torch.Tensor, antibodies: torch.Tensor, owner: torch.Tensor,
                 params: ImmunoParams, train: Optional[tuple[torch.Tensor, torch.Tensor, Sequence[str]]] = None,
                 val: Optional[tuple[torch.Tensor, torch.Tensor]] = None, vaccinate: bool = True,
                 calibrate: bool = True, identity: str = "", progress: bool = True) -> ImmunoScorer:
    """Fit Immuno-VLM.

    Args:
        text_prototypes: ``[C, d]`` unit text embeddings of the ID classes.
        antibodies: ``[M, d]`` unit antibody embeddings, ``owner`` ``[M]`` their classes.
        params: hyper-parameters.
        train: ``(features [N, d], labels [N], image_paths)`` of ID training images, for the
            geodesic prototypes and vaccination; ``None`` = text prototypes, no adapter.
        val: ``(features, labels)`` of ID validation images, for EVT (``calibrate``).
        vaccinate: train (or load) the rejection adapter; needs ``train``.
        calibrate: fit the per-class Weibulls; needs ``val``.
        identity: the net's identity, part of the adapter cache key.
    """
    device = text_prototypes.device
    num_classes = text_prototypes.shape[0]
    owner = owner.long().to(device)
    if antibodies.shape[0] != owner.shape[0]:
        raise ValueError(f"{antibodies.shape[0]} antibody embeddings but {owner.shape[0]} owners")
    if vaccinate and train is None:
        raise ValueError("vaccination needs ID training features (id_features['train'])")
    if calibrate and val is None:
        raise ValueError("EVT calibration needs ID validation features (id_features['val'])")
    for split, data in (("train", train), ("val", val)):
        if data is not None:
            check_id_features(split, data[0], data[1], text_prototypes.shape[1], num_classes)

    if train is not None:
        x_train, y_train, paths = train[0].float().to(device), train[1].long().to(device), list(train[2])
        means, counts = class_means(x_train, y_train, num_classes)
        prototypes = geodesic_prototypes(text_prototypes, means, counts, math.radians(params.theta_deg))
    else:
        prototypes = F.normalize(text_prototypes.float(), dim=1)

    if params.antibody_source == "gaussian_noise":
        antibodies = gaussian_antibodies(prototypes, owner, params.noise_sigma, params.seed)
    antibodies = antibodies.float().to(device)
    keep, _ = band_pass_mask(antibodies, owner, prototypes, params.delta_low, params.delta_high)
    report = FilterReport.from_mask(owner, keep, num_classes, params.delta_low, params.delta_high)
    log.info("%s", report.summary())
    if not bool(keep.any()):
        raise ValueError(f"no antibody survived the band-pass filter [{params.delta_low}, "
                         f"{params.delta_high}] (cosines to the prototypes lie elsewhere): widen "
                         "delta_low/delta_high")
    scorer = ImmunoScorer(prototypes, antibodies[keep], owner[keep], float(params.lam), report=report)

    if vaccinate:
        idx = few_shot_indices(y_train.cpu(), paths, int(params.shots), int(params.max_train),
                               int(params.seed)).to(device)
        kappa, n_pooled = estimate_kappa(x_train[idx], y_train[idx], prototypes,
                                         int(params.kappa_min_samples))
        margin = params.margin
        if margin == "auto":
            margin = auto_margin(x_train[idx], y_train[idx], scorer.antibodies, scorer.owner,
                                 float(params.margin_quantile))
        log.info("vMF kappa: median %.1f over %d classes (%d use the pooled estimate); push margin "
                 "%.4f", float(kappa.median()), num_classes, n_pooled, margin)
        scorer.adapter, scorer.vaccination = load_or_vaccinate(
            x_train[idx], y_train[idx], prototypes, kappa, scorer.antibodies, scorer.owner,
            params.vaccination(margin), identity, device, progress)

    if calibrate:
        _, val_dis = scorer.dis(val[0])
        scorer.evt_output = params.evt_output
        scorer.evt = EVTCalibrator.fit(val_dis, val[1], num_classes, float(params.evt_tail),
                                       int(params.evt_min_samples))
    return scorer
