"""Parameters of OpenOOD's classic postprocessors on the CLIP net (the only place their defaults
live). Defaults and sweep lists are those of OpenOOD v1.5's ``configs/postprocessors/<name>.yml``,
so a name gives OpenOOD's numbers; the one exception is ViM's sweep (see :class:`VIMParams`)."""
from __future__ import annotations

from dataclasses import dataclass

from openood_immuno.core.params import Params, param


@dataclass(frozen=True)
class MSPParams(Params):
    """MSP has no parameter."""


@dataclass(frozen=True)
class MLSParams(Params):
    """Max logit has no parameter."""


@dataclass(frozen=True)
class EBOParams(Params):
    """Energy (OpenOOD ``ebo.yml``)."""

    temperature: float = param(1.0, "energy temperature T: S = T logsumexp(z / T)", low=0, low_open=True,
                               sweep=(1.0,))


@dataclass(frozen=True)
class GENParams(Params):
    """GEN (OpenOOD ``gen.yml``)."""

    gamma: float = param(0.1, "exponent of the generalized entropy", low=0, low_open=True,
                         sweep=(0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0))
    M: int = param(100, "number of largest class probabilities summed", low=1,
                   sweep=(10, 50, 100, 200, 500, 1000))


@dataclass(frozen=True)
class ReActParams(Params):
    """ReAct (OpenOOD ``react.yml``): the clip value is this percentile of the ID val features."""

    percentile: float = param(90.0, "percentile of all ID val feature coordinates used as clip value",
                              low=0, high=100, sweep=(85.0, 90.0, 95.0, 99.0))


@dataclass(frozen=True)
class ASHParams(Params):
    """ASH-B (OpenOOD ``ash.yml``)."""

    percentile: float = param(90.0, "percent of feature coordinates pruned", low=0, high=100,
                              sweep=(65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0))


@dataclass(frozen=True)
class SCALEParams(Params):
    """SCALE (OpenOOD ``scale.yml``)."""

    percentile: float = param(85.0, "percent of feature coordinates left out of the scaling sum", low=0,
                              high=100, sweep=(65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0))


@dataclass(frozen=True)
class DICEParams(Params):
    """DICE (OpenOOD ``dice.yml``)."""

    p: float = param(90.0, "percentile of weight contributions pruned from the head", low=0, high=100,
                     sweep=(90.0,))


@dataclass(frozen=True)
class KNNParams(Params):
    """KNN (OpenOOD ``knn.yml``; ``bank_ratio`` is the authors' ``ALPHA``, deeplearning-wisc/knn-ood
    ``run_imagenet.py``: OpenOOD banks every train feature, the paper also reports a 1% bank)."""

    K: int = param(50, "the K-th nearest ID train feature gives the score", low=1,
                   sweep=(50, 100, 200, 500, 1000))
    bank_ratio: float = param(1.0, "share alpha of the ID train features kept in the bank, drawn "
                              "once without replacement (1 = all, as OpenOOD; 0.01 = the paper's 1% bank)",
                              low=0, high=1, low_open=True)
    bank_seed: int = param(0, "seed of the bank's draw when bank_ratio < 1", low=0)

    NOT_IN_OPENOOD = ("bank_ratio", "bank_seed")
    """Ours only: OpenOOD's own ``knn`` (what its ``main.py`` route runs) does not read them."""


@dataclass(frozen=True)
class VIMParams(Params):
    """ViM (OpenOOD ``vim.yml``: dim 256). OpenOOD's sweep also tries 1000, more than CLIP's
    embedding has (512 for ViT-B/16: no residual left, NaN scores), so the sweep here is 256 only."""

    dim: int = param(256, "dimension of the principal subspace (the residual is the rest)", low=1,
                     sweep=(256,))


@dataclass(frozen=True)
class MDSParams(Params):
    """Mahalanobis has no parameter."""


@dataclass(frozen=True)
class RMDSParams(Params):
    """Relative Mahalanobis has no parameter."""


@dataclass(frozen=True)
class KLMParams(Params):
    """KL matching has no parameter."""


@dataclass(frozen=True)
class GradNormParams(Params):
    """GradNorm has no parameter."""


@dataclass(frozen=True)
class SHEParams(Params):
    """SHE (OpenOOD ``she.yml``)."""

    metric: str = param("inner_product", "similarity to the stored pattern",
                        choices=("inner_product", "euclidean", "cosine"))


@dataclass(frozen=True)
class FDBDParams(Params):
    """fDBD (OpenOOD ``fdbd.yml``)."""

    distance_as_normalizer: bool = param(True, "divide by ||f - mean ID train feature|| (else by ||f||)",
                                         sweep=(True, False))


@dataclass(frozen=True)
class NCIParams(Params):
    """NCI (OpenOOD ``nci.yml``)."""

    alpha: float = param(0.0001, "weight of the L1 norm of the feature", low=0,
                         sweep=(0.0001, 0.001, 0.01, 0.1))
