"""Parameters of Immuno-VLM (the only place their defaults live), one class per variant:

* :class:`ImmunoZeroShotParams` (``immuno_zeroshot``): prompts, antibody bank, DIS, band-pass;
* :class:`ImmunoDISParams` (``immuno_dis``): + geodesic prototypes and the vaccinated adapter;
* :class:`ImmunoParams` (``immuno`` and the Table-2 ablations): + per-class EVT and its
  reject decision ``tau``.

The paper's numeric hyper-parameters were lost from its text: every default here is our choice
(docs/immuno_vlm.md explains each); each lost one has a sweep list (an OpenOOD APS grid). What
survives of the training regime (10 epochs on all of ImageNet-1K, Sec. 4.3) is the
``immuno_paper`` preset (``shots: all``, ``epochs: 10``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Tuple, Union

from openood_immuno.core.params import ParamError, Params, param

PRECISIONS = ("fp32", "bf16")
ANTIBODY_SOURCES = ("bank", "gaussian_noise", "random_words")
EVT_OUTPUTS = ("hazard", "cdf")
EVT_FITS = ("heldout_train", "val")


@dataclass(frozen=True)
class ImmunoZeroShotParams(Params):
    """Frozen CLIP, text prototypes, antibodies, DIS (``immuno_zeroshot``)."""

    templates: Tuple[str, ...] = param(("a photo of a {}.",), "ID prompts (text anchor t_c)",
                                       placeholder="{}", nonempty=True)
    antibody_bank: str = param("wordnet", "'wordnet' (built on the fly, cached) or a bank JSON path",
                               nonempty=True)
    n_near: int = param(10, "near-OOD antibodies per class (on-the-fly WordNet bank)", low=0)
    n_contextual: int = param(5, "contextual antibodies per class (on-the-fly WordNet bank)", low=0)
    near_template: str = param("a photo of a {}.", "prompt of near-OOD antibody names", placeholder="{}")
    contextual_template: str = param("a photo of {}.", "prompt of contextual sentences (\"a melting "
                                     "tench\")", placeholder="{}")
    lam: float = param(1.0, "DIS = S_self - lambda * S_nonself", yml="lambda", low=0,
                       sweep=(0.5, 1.0, 2.0), means=("lmbda", "lambda_"))
    delta_low: float = param(0.55, "band-pass: keep delta_low <= cos(e(a), mu_c) <= delta_high",
                             low=-1, high=1, sweep=(0.45, 0.55, 0.65))
    delta_high: float = param(0.92, "band-pass upper bound", low=-1, high=1, sweep=(0.88, 0.92, 0.96))
    band_pass: bool = param(True, "band-pass filtration of the antibodies; false keeps every "
                            "antibody (Table 2's 'no filter' rows)")
    antibody_source: str = param("bank", "bank, or a Table-2 ablation: gaussian_noise (isotropic: "
                                 "a = normalise(N(0, I_d))), random_words", choices=ANTIBODY_SOURCES)
    seed: int = param(0, "bank patterns, few-shot draw, training, noise and random words", low=0)
    allow_partial_bank: bool = param(False, "use a bank with antibodies for fewer than 50% of the ID "
                                     "classes (refused by default)")

    def check(self) -> None:
        if self.delta_low > self.delta_high:
            raise ParamError(f"delta_low must be <= delta_high, got delta_low {self.delta_low} > "
                             f"delta_high {self.delta_high}")

    def resources(self) -> tuple[str, ...]:
        # the on-the-fly bank and the random_words ablation are drawn from WordNet
        wordnet = self.antibody_bank == "wordnet" or self.antibody_source == "random_words"
        return ("wordnet",) if wordnet else ()


@dataclass(frozen=True)
class ImmunoDISParams(ImmunoZeroShotParams):
    """+ geodesic prototypes and the vaccinated rejection adapter; conf = DIS (``immuno_dis``)."""

    TRAINING: ClassVar[Tuple[str, ...]] = (
        "adapter_hidden", "epochs", "lr", "batch_size", "weight_decay", "beta", "hard_k", "seed",
        "precision")
    """The parameters the vaccination loop reads (:func:`~.vaccination.vaccinate`), besides the
    resolved margin (``margin``, or ``auto`` -> a number from ``margin_quantile``)."""

    theta_deg: float = param(20.0, "prototype within theta of the text embedding, degrees (Thm 3.4)",
                             low=0, high=180, sweep=(10.0, 20.0, 40.0))
    kappa_min_samples: int = param(5, "fewer training images -> pooled vMF kappa", low=1)
    shots: Union[int, str] = param(16, "training images per class (all or 0 = the whole training "
                                   "list)", also=("all",), low=0)
    max_train: int = param(0, "cap on training images (0 = none)", low=0)
    adapter_hidden: int = param(512, "residual MLP width (0.5M parameters at d = 512)", low=1)
    epochs: int = param(20, "training epochs (AdamW on cached features)", low=1,
                        means=("epoch", "num_epochs", "n_epochs"))
    lr: float = param(1e-3, "learning rate", low=0, low_open=True,
                     means=("learning_rate", "step_size"))
    batch_size: int = param(256, "training batch size", low=1)
    weight_decay: float = param(1e-4, "AdamW weight decay", low=0, means=("wd",))
    beta: float = param(5.0, "loss = pull + beta * push", low=0, sweep=(1.0, 5.0, 20.0))
    margin: Union[float, str] = param("auto", "push hinge cos(g(z), a) <= margin; auto = the "
                                      "margin_quantile of ID-antibody cosines under frozen CLIP",
                                      also=("auto",), low=-1, high=1)
    margin_quantile: float = param(0.9, "quantile of the auto margin", low=0, high=1, low_open=True,
                                   sweep=(0.75, 0.9, 0.97))
    hard_k: int = param(8, "hardest antibodies overall in the push term", low=0)
    precision: str = param("fp32", "vaccination arithmetic: fp32, or bf16 autocast of the adapter "
                           "and antibody cosines (loss within 1e-3 of fp32; fast on GPUs)",
                           choices=PRECISIONS)

    @property
    def n_shots(self) -> int:
        """``shots`` as :func:`~.vaccination.few_shot_indices` takes it (0 = all)."""
        return 0 if self.shots == "all" else int(self.shots)

    def training_args(self, margin: float) -> dict[str, Any]:
        """``{yml name: value}`` of :data:`TRAINING` and the resolved ``margin``: everything the
        trained adapter depends on besides its input tensors (its cache key holds them)."""
        return {**{name: self.get(name) for name in self.TRAINING}, "margin": float(margin)}


@dataclass(frozen=True)
class ImmunoParams(ImmunoDISParams):
    """+ per-class EVT (Weibull) calibration of DIS and its decision (``immuno``, the ablations)."""

    # tau does not change conf (only the decision), so OpenOOD's APS, which maximises AUROC,
    # cannot choose it: its sweep list is used only when a config names tau_list.
    SWEEP_EXCLUDE = ("tau",)

    evt_fit: str = param("heldout_train", "images whose DIS the per-class Weibulls are fitted on: "
                         "heldout_train (training images not drawn for vaccination, evt_per_class of "
                         "each class; the val list when there are none) or val (the ID validation "
                         "list, the paper's; 5 per class on ImageNet)", choices=EVT_FITS)
    evt_per_class: int = param(100, "held-out training images per class for the Weibull fit "
                               "(evt_fit: heldout_train; 0 = every one not drawn for vaccination)",
                               low=0)
    evt_tail: float = param(0.5, "fraction of a class's lowest fit-set DIS fitted", low=0, high=1,
                            low_open=True, sweep=(0.25, 0.5, 1.0))
    evt_censored: bool = param(True, "fit the tail as a type-II censored sample of the whole class "
                               "(F = the class's CDF: tau is the ID rejection rate); false: the "
                               "Weibull of the tail alone")
    evt_min_samples: int = param(5, "fewer fit-set images -> pooled Weibull", low=1)
    evt_output: str = param("hazard", "conf = -log(1 - F_pred(DIS)) (hazard: no rounding to 1.0) or "
                            "F_pred(DIS) (cdf); same ranking", choices=EVT_OUTPUTS)
    tau: float = param(0.05, "EVT decision: reject (OOD) when F_pred(DIS) < tau (the share of ID "
                       "images rejected when the fit holds: ID_reject@tau in results); F1@tau in "
                       "results (sweep tau_list: not in the default APS grid, AUROC does not depend "
                       "on it)", low=0, high=1, low_open=True, high_open=True,
                       sweep=(0.01, 0.05, 0.1, 0.2),
                       means=("threshold", "reject_threshold"))
