"""The fitted Immuno-VLM scorer: prototypes -> filtered antibodies -> adapter -> DIS -> EVT.

:func:`build_scorer` is the whole method given embeddings, so tests run the real code on
synthetic geometry; :func:`fit_on_net` first turns a CLIP net's class names and antibody texts
into those embeddings (and picks the training images). The parameters are
:mod:`.params` (``ImmunoZeroShotParams`` / ``ImmunoDISParams`` / ``ImmunoParams``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from openood_immuno.core.cache import content_key
from openood_immuno.data.features import check_features
from openood_immuno.scores.immuno import dis_score
from .adapter import RejectionAdapter
from .antibody_sources import antibody_texts, bank_key, isotropic_antibodies, load_bank
from .antigen import class_means, estimate_kappa, geodesic_prototypes
from .encode import encode_antibodies
from .evt import EVTCalibrator
from .filtration import FilterReport, band_pass_mask, no_filter_mask
from .params import ImmunoDISParams, ImmunoParams, ImmunoZeroShotParams
from .vaccination import auto_margin, few_shot_indices, load_or_vaccinate

log = logging.getLogger(__name__)


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

    @torch.no_grad()
    def accept(self, features: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, accepted)``: the paper's EVT decision (Sec. 3.6), reject ``x`` (OOD) when
        ``F_pred(DIS(x)) < tau``; needs the EVT calibration (``immuno``)."""
        if self.evt is None:
            raise ValueError("the EVT decision needs the EVT calibration: use immuno (not "
                             "immuno_dis/immuno_zeroshot)")
        pred, dis = self.dis(features)
        return pred, (self.evt.cdf(dis, pred) >= tau).to(dis.device)


def build_scorer(text_prototypes: torch.Tensor, antibodies: torch.Tensor, owner: torch.Tensor,
                 params: ImmunoZeroShotParams, train: Optional[tuple[torch.Tensor, torch.Tensor, Sequence[str]]] = None,
                 val: Optional[tuple[torch.Tensor, torch.Tensor]] = None, vaccinate: bool = True,
                 calibrate: bool = True, identity: str = "", progress: bool = True) -> ImmunoScorer:
    """Fit Immuno-VLM.

    Args:
        text_prototypes: ``[C, d]`` unit text embeddings of the ID classes.
        antibodies: ``[M, d]`` unit antibody embeddings, ``owner`` ``[M]`` their classes.
        params: hyper-parameters (:class:`ImmunoDISParams` to ``vaccinate``,
            :class:`ImmunoParams` to ``calibrate``).
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
    if vaccinate and not isinstance(params, ImmunoDISParams):
        raise TypeError(f"vaccination needs ImmunoDISParams (adapter settings), got {type(params).__name__}")
    if calibrate and not isinstance(params, ImmunoParams):
        raise TypeError(f"EVT calibration needs ImmunoParams (EVT settings), got {type(params).__name__}")
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
        antibodies = isotropic_antibodies(owner, prototypes.shape[1], params.seed, device)
    antibodies = antibodies.float().to(device)
    keep = (band_pass_mask(antibodies, owner, prototypes, params.delta_low, params.delta_high)[0]
            if params.band_pass else no_filter_mask(owner))
    report = FilterReport.from_mask(owner, keep, num_classes, params.delta_low, params.delta_high,
                                    params.band_pass)
    log.info("%s", report.summary())
    if not bool(keep.any()):
        raise ValueError(f"no antibody survived the band-pass filter [{params.delta_low}, "
                         f"{params.delta_high}] (cosines to the prototypes lie elsewhere): widen "
                         "delta_low/delta_high")
    scorer = ImmunoScorer(prototypes, antibodies[keep], owner[keep], params.lam, report=report)

    if vaccinate:
        idx = few_shot_indices(y_train.cpu(), paths, params.n_shots, params.max_train,
                               params.seed).to(device)
        kappa, n_pooled = estimate_kappa(x_train[idx], y_train[idx], prototypes,
                                         params.kappa_min_samples)
        margin = params.margin
        if margin == "auto":
            margin = auto_margin(x_train[idx], y_train[idx], scorer.antibodies, scorer.owner,
                                 params.margin_quantile)
        log.info("vMF kappa: median %.1f over %d classes (%d use the pooled estimate); push margin "
                 "%.4f", float(kappa.median()), num_classes, n_pooled, margin)
        scorer.adapter, scorer.vaccination = load_or_vaccinate(
            x_train[idx], y_train[idx], prototypes, kappa, scorer.antibodies, scorer.owner,
            params, margin, identity, device, progress)

    if calibrate:
        _, val_dis = scorer.dis(val[0])
        scorer.evt_output = params.evt_output
        scorer.evt = EVTCalibrator.fit(val_dis, val[1], num_classes, params.evt_tail,
                                       params.evt_min_samples)
    return scorer


class Memo:
    """The last value of each stage, recomputed only when its key changes (a sweep step that
    changes lambda re-encodes nothing)."""

    def __init__(self):
        self._stages: dict[str, tuple[str, Any]] = {}

    def get(self, stage: str, key: str, compute: Callable[[], Any]) -> Any:
        if stage not in self._stages or self._stages[stage][0] != key:
            self._stages[stage] = (key, compute())
        return self._stages[stage][1]


def _train_features(id_features, params: ImmunoDISParams):
    """ID training features; with ``shots``/``max_train`` only the drawn images are encoded.

    The draw (:func:`few_shot_indices`) is made from the list file before any backbone pass
    when ``id_features`` can do so (``LazyFeatures.subset``); :func:`build_scorer` draws again
    from the result, which then keeps every image, so both paths train on the same set.
    """
    subset = getattr(id_features, "subset", None)
    if subset is None or (params.n_shots <= 0 and params.max_train <= 0):
        return id_features["train"]
    return subset("train", lambda labels, paths: few_shot_indices(
        labels, paths, params.n_shots, params.max_train, params.seed))


def fit_on_net(net, id_features: Mapping[str, Any], params: ImmunoZeroShotParams, vaccinate: bool,
               calibrate: bool, memo: Optional[Memo] = None) -> ImmunoScorer:
    """:func:`build_scorer` for a CLIP ``net``: ID prompts ``templates`` and antibody texts
    (near-OOD names with ``near_template``, contextual ones with ``contextual_template``)
    encoded by the net; ``id_features['train']`` / ``['val']`` when ``vaccinate`` /
    ``calibrate``. ``memo`` keeps the bank and its embeddings between calls."""
    memo = memo or Memo()
    names = list(net.class_names)
    bank = memo.get("bank", bank_key(params, names), lambda: load_bank(params, names))
    key = content_key(bank.digest(), params.antibody_source, params.seed, params.near_template,
                      params.contextual_template, net.identity)
    antibodies, owner = memo.get("antibodies", key, lambda: encode_antibodies(
        net, antibody_texts(bank, names, params),
        {"near_ood": params.near_template, "contextual": params.contextual_template}))
    text = net.encode_text(names, params.templates).float()
    train = val = None
    if vaccinate and "train" in id_features:
        fs = _train_features(id_features, params)
        train = (fs.features, fs.labels, fs.image_paths)
    if calibrate and "val" in id_features:
        fs = id_features["val"]
        val = (fs.features, fs.labels)
    return build_scorer(text, antibodies, owner, params, train, val, vaccinate, calibrate,
                        identity=net.identity)
