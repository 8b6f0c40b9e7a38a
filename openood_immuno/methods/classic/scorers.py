"""Fitted scorers of OpenOOD's classic postprocessors on a linear head ``(W, b)``.

``Scorer(params, weight, bias).fit(id_fs)`` reads the ID split named by ``split`` (``None``: no
ID data; ``'train'`` or ``'val'``, the split OpenOOD's ``setup`` reads), ``refresh()`` recomputes
what depends on the parameters after an APS step (from the features kept by ``fit``, as OpenOOD
keeps its ``activation_log``), ``score(features) -> (pred, conf)``. The formulas are the pure
functions of :mod:`openood_immuno.scores.classic`.
"""
from __future__ import annotations

from typing import ClassVar, Optional

import torch

from openood_immuno.core.params import Params
from openood_immuno.scores import classic as S
from . import params as P


class ClassicScorer:
    """Base: a linear head ``(weight [C, d], bias [C])`` and the params; subclasses set ``split``."""

    split: ClassVar[Optional[str]] = None

    def __init__(self, params: Params, weight: torch.Tensor, bias: torch.Tensor):
        self.params = params
        self.weight = weight.detach().float().cpu()
        self.bias = bias.detach().float().cpu()
        self.num_classes = int(self.weight.shape[0])

    def fit(self, id_fs=None) -> "ClassicScorer":
        return self

    def refresh(self) -> None:
        """Recompute what depends on ``self.params`` (after an APS step)."""

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return S.linear_logits(features.float().cpu(), self.weight, self.bias)

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class MSPScorer(ClassicScorer):
    def score(self, features):
        return S.msp_score(self.logits(features))


class MLSScorer(ClassicScorer):
    def score(self, features):
        return S.max_logit_score(self.logits(features))


class EBOScorer(ClassicScorer):
    def score(self, features):
        return S.energy_score(self.logits(features), self.params.temperature)


class GENScorer(ClassicScorer):
    def score(self, features):
        return S.gen_score(self.logits(features), self.params.gamma, self.params.M)


class GradNormScorer(ClassicScorer):
    def score(self, features):
        return S.gradnorm_score(self.logits(features), features.float().cpu())


class ReActScorer(ClassicScorer):
    split = "val"

    def fit(self, id_fs=None):
        self.id_features = id_fs.features
        self.refresh()
        return self

    def refresh(self):
        self.threshold = S.react_threshold(self.id_features, self.params.percentile)

    def score(self, features):
        return S.react_score(features.float().cpu(), self.weight, self.bias, self.threshold)


class ASHScorer(ClassicScorer):
    def score(self, features):
        return S.ash_score(features.float().cpu(), self.weight, self.bias, self.params.percentile)


class SCALEScorer(ClassicScorer):
    def score(self, features):
        return S.scale_score(features.float().cpu(), self.weight, self.bias, self.params.percentile)


class DICEScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.mean_feature = id_fs.features.float().mean(0)
        self.refresh()
        return self

    def refresh(self):
        self.masked_weight = S.dice_weight(self.mean_feature, self.weight, self.params.p)

    def score(self, features):
        return S.dice_score(features.float().cpu(), self.masked_weight, self.bias)


class KNNScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.train_features = id_fs.features.float()
        self.refresh()
        return self

    def refresh(self):
        self.bank = S.knn_bank(self.train_features, self.params.bank_ratio, self.params.bank_seed)

    def score(self, features):
        return S.knn_score(features.float().cpu(), self.bank, self.params.K, self.logits(features))


class VIMScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.train_features = id_fs.features
        self.refresh()
        return self

    def refresh(self):
        self.u, self.ns, self.alpha = S.vim_fit(self.train_features, self.weight, self.bias, self.params.dim)

    def score(self, features):
        return S.vim_score(features.float().cpu(), self.weight, self.bias, self.u, self.ns, self.alpha)


class MDSScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.means, self.precision = S.mds_fit(id_fs.features, id_fs.labels, self.num_classes)
        return self

    def score(self, features):
        feats = features.float().cpu()
        return S.mds_score(feats, self.logits(feats), self.means, self.precision)


class RMDSScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.stats = S.rmds_fit(id_fs.features, id_fs.labels, self.num_classes)
        return self

    def score(self, features):
        feats = features.float().cpu()
        return S.rmds_score(feats, self.logits(feats), *self.stats)


class KLMScorer(ClassicScorer):
    split = "val"

    def fit(self, id_fs=None):
        self.templates = S.klm_fit(self.logits(id_fs.features), self.num_classes)
        return self

    def score(self, features):
        return S.klm_score(self.logits(features), self.templates)


class SHEScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        feats = id_fs.features.float()
        self.patterns = S.she_fit(feats, id_fs.labels, self.logits(feats), self.num_classes)
        return self

    def score(self, features):
        feats = features.float().cpu()
        return S.she_score(feats, self.logits(feats), self.patterns, self.params.metric)


class FDBDScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.train_mean = id_fs.features.float().mean(0)
        self.denominators = S.fdbd_denominators(self.weight)
        return self

    def score(self, features):
        feats = features.float().cpu()
        mean = self.train_mean if self.params.distance_as_normalizer else None
        return S.fdbd_score(feats, self.logits(feats), self.denominators, mean)


class NCIScorer(ClassicScorer):
    split = "train"

    def fit(self, id_fs=None):
        self.train_mean = id_fs.features.float().mean(0)
        return self

    def score(self, features):
        feats = features.float().cpu()
        return S.nci_score(feats, self.logits(feats), self.weight, self.train_mean, self.params.alpha)


#: OpenOOD name -> (params class, scorer class)
CLASSIC = {
    "msp": (P.MSPParams, MSPScorer),
    "ebo": (P.EBOParams, EBOScorer),
    "mls": (P.MLSParams, MLSScorer),
    "gen": (P.GENParams, GENScorer),
    "gradnorm": (P.GradNormParams, GradNormScorer),
    "react": (P.ReActParams, ReActScorer),
    "ash": (P.ASHParams, ASHScorer),
    "scale": (P.SCALEParams, SCALEScorer),
    "dice": (P.DICEParams, DICEScorer),
    "knn": (P.KNNParams, KNNScorer),
    "vim": (P.VIMParams, VIMScorer),
    "mds": (P.MDSParams, MDSScorer),
    "rmds": (P.RMDSParams, RMDSScorer),
    "klm": (P.KLMParams, KLMScorer),
    "she": (P.SHEParams, SHEScorer),
    "fdbd": (P.FDBDParams, FDBDScorer),
    "nci": (P.NCIParams, NCIScorer),
}
