"""The falsification test asked for by the review of Immuno-VLM (papers/001, "What would settle
it"): with the antibodies on and off, over several training seeds, do the antibodies lower the
confidence on held-out OOD images, and do they cost ID accuracy?

Variants (:data:`~.variants.DEFAULT_VARIANTS`: ``immuno``, ``immuno_no_antibodies``,
``immuno_zeroshot``, ``mcm``; :mod:`.variants` describes each), each fitted once per training
seed on the same cached features.

Per variant and seed (:func:`variant_metrics`), with ``g`` the variant's feature map (its
adapter, or the identity) and ``mu`` its classifier's prototypes:

* ``ACC``: top-1 accuracy of the variant's own predictions on the ID test set (%);
* ``AUROC_near``, ``FPR95_near``, ``AUROC_far``, ``FPR95_far``: OpenOOD's metrics (%), the
  mean over the near (far) OOD sets;
* ``conf_id``, ``conf_ood/<set>``: mean of the variant's own confidence (each method's scale:
  EVT hazard, DIS, MCM; compare them within a variant, not across);
* ``msp_id``, ``msp_ood/<set>``, ``msp_near``, ``msp_far``: mean max-softmax of its classifier,
  ``max_c softmax(cos(g(x), mu_c) / T)`` (one scale for every variant; ``T`` = MCM's), on the ID
  test set, each OOD set and the mean over each group's sets (the review's confidence
  criterion, reported beside AUROC);
* ``abcos_<id|near|far>_<before|after>``: mean nearest-antibody cosine ``max_a cos(z, a)``
  (before: frozen features ``z``) and ``max_a cos(g(z), a)`` (after vaccination) over the ID
  test images and the images of the near (far) OOD sets, always against the antibodies of the
  full method of that seed, so every variant is measured against the same set;
* ``train_push_before``, ``train_push_after``: the push loss on the adapter's training set
  before and after vaccination (NaN without an adapter).

:func:`~.falsification_verdict.summarize` gives the mean and standard deviation over seeds and
the paired deltas ``variant - immuno`` (per seed, then mean and std);
:func:`~.falsification_verdict.verdicts` reads the decisive pair
(``immuno`` vs ``immuno_no_antibodies``) against the rule stated in docs/immuno_vlm.md
("Falsification"); :func:`~.falsification_report.write_falsification` writes ``falsification.md``,
``.csv`` and ``.png`` atomically.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from openood_immuno.core.redact import redact, redact_all
from openood_immuno.data.features import FeatureSet
from openood_immuno.methods.mcm.params import MCMParams
from openood_immuno.methods.mcm.scorer import MCMScorer
from openood_immuno.core.metrics import compute_all_metrics
from openood_immuno.core.params import Params
from openood_immuno.methods.immuno.scorer import ImmunoScorer
from openood_immuno.postprocessors.registry import build_postprocessor, resolved_params
from .variants import DEFAULT_VARIANTS, EVERY, REFERENCE, Variant

log = logging.getLogger(__name__)

@dataclass
class FalsificationData:
    """The inputs: a net, its ID splits (``train``/``val``, as ``fit`` takes them) and the
    features of the ID test set and of every OOD set (``near``/``far`` name the groups)."""

    net: Any
    id_features: Mapping[str, Any]
    id_test: FeatureSet
    ood: Mapping[str, FeatureSet]
    near: Sequence[str]
    far: Sequence[str]

    def __post_init__(self):
        missing = [n for n in (*self.near, *self.far) if n not in self.ood]
        if missing or not self.near or not self.far:
            raise ValueError(f"near {list(self.near)} and far {list(self.far)} must be non-empty "
                             f"and name OOD sets of {sorted(self.ood)}")


@dataclass
class FalsificationResult:
    """Per-seed metrics ``per_seed[variant][seed][metric]`` and what produced them."""

    variants: Sequence[Variant]
    seeds: Sequence[int]
    per_seed: dict[str, dict[int, dict[str, float]]]
    provenance: dict = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        first = self.per_seed[self.variants[0].label][self.seeds[0]]
        return list(first)


# ---- the measurements (pure tensor functions) ------------------------------------------------
def classifier(pp) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """``(g, prototypes)`` of a fitted postprocessor: its feature map and its classifier's unit
    class vectors (Immuno: adapter and geodesic/text prototypes; MCM: identity and prompts)."""
    scorer = getattr(pp, "scorer", None)
    if isinstance(scorer, ImmunoScorer):
        return scorer.adapt, scorer.prototypes
    if isinstance(scorer, MCMScorer):
        return (lambda z: z.float().to(scorer.class_text.device)), scorer.class_text.float()
    raise TypeError(f"postprocessor {pp.name!r} has no classifier this test can read (Immuno-VLM "
                    "and MCM only)")


def max_softmax(features: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """``max_c softmax(cos(x, mu_c) / T)`` per row (MCM's score of any cosine classifier)."""
    logits = features.float() @ prototypes.float().to(features.device).T / temperature
    return logits.softmax(dim=1).max(dim=1).values


def nearest_antibody_cosine(features: torch.Tensor, antibodies: torch.Tensor,
                            chunk: int = 4096) -> torch.Tensor:
    """``max_a cos(x, a)`` per row (unit rows), in chunks (no N x M matrix in memory)."""
    ab = antibodies.float().to(features.device)
    return torch.cat([(features[i:i + chunk].float() @ ab.T).max(dim=1).values
                      for i in range(0, features.shape[0], chunk)])


@torch.no_grad()
def _mapped(g, fs: FeatureSet, batch_size: int) -> torch.Tensor:
    return torch.cat([g(x) for x, _, _ in fs.batches(batch_size)]) if len(fs) else fs.features.float()


@torch.no_grad()
def variant_metrics(pp, data: FalsificationData, antibodies: torch.Tensor, temperature: float,
                    batch_size: int = 1024) -> dict[str, float]:
    """The metrics of one fitted postprocessor (see the module docstring)."""
    g, prototypes = classifier(pp)
    id_pred, id_conf, id_label = pp.score_feature_set(data.id_test, batch_size)
    out = {"ACC": 100 * float(np.mean(id_pred == id_label))}
    per_set, conf, msp = {}, {}, {}
    mapped = {"id": _mapped(g, data.id_test, batch_size)}
    for name, fs in data.ood.items():
        pred, c, _ = pp.score_feature_set(fs, batch_size)
        per_set[name] = compute_all_metrics(np.concatenate([id_conf, c]),
                                            np.concatenate([id_label, -np.ones(len(c), dtype=int)]),
                                            np.concatenate([id_pred, pred]))
        conf[name] = float(np.mean(c))
        mapped[name] = _mapped(g, fs, batch_size)
        msp[name] = float(max_softmax(mapped[name], prototypes, temperature).mean())
    for group, names in (("near", data.near), ("far", data.far)):
        out[f"AUROC_{group}"] = 100 * float(np.mean([per_set[n][1] for n in names]))
        out[f"FPR95_{group}"] = 100 * float(np.mean([per_set[n][0] for n in names]))
        out[f"msp_{group}"] = float(np.mean([msp[n] for n in names]))  # the review's confidence
    out["conf_id"] = float(np.mean(id_conf))
    out.update({f"conf_ood/{n}": v for n, v in conf.items()})
    out["msp_id"] = float(max_softmax(mapped["id"], prototypes, temperature).mean())
    out.update({f"msp_ood/{n}": v for n, v in msp.items()})
    groups = {"id": [("id", data.id_test)], "near": [(n, data.ood[n]) for n in data.near],
              "far": [(n, data.ood[n]) for n in data.far]}
    for group, sets in groups.items():
        before = torch.cat([nearest_antibody_cosine(fs.features.float(), antibodies) for _, fs in sets])
        after = torch.cat([nearest_antibody_cosine(mapped[n], antibodies) for n, _ in sets])
        out[f"abcos_{group}_before"] = float(before.mean())
        out[f"abcos_{group}_after"] = float(after.mean())
    info = getattr(getattr(pp, "scorer", None), "vaccination", None) or {}
    out["train_push_before"] = float(info["before"]["push"]) if info else math.nan
    out["train_push_after"] = float(info["after"]["push"]) if info else math.nan
    return out


# ---- the run ---------------------------------------------------------------------------------
def variant_overrides(variant: Variant, params: Params, seed: int,
                      pp_args: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The overrides of ``variant`` at training ``seed``: its own, then those of
    ``pp_args['*']`` that are parameters of its method (``params``: its resolved defaults),
    then ``pp_args[variant.label]``, then ``seed``."""
    every = {k: v for k, v in pp_args.get(EVERY, {}).items() if not params.unknown([k])}
    out = {**variant.overrides, **every, **pp_args.get(variant.label, {})}
    if "seed" in params.names():
        out["seed"] = seed
    return out


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as integers; at least one, all distinct."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"training seeds must be distinct and at least one, got {seeds}")
    return seeds


def check_variants(variants: Sequence[Variant], pp_args: Mapping[str, Mapping[str, Any]]) -> None:
    """Validate every variant's overrides and ``pp_args`` (``{variant label or '*': {key:
    value}}``, ``--pp-arg NAME.KEY=VALUE``) before any work (one line per error)."""
    labels = [v.label for v in variants]
    if REFERENCE not in labels or labels[0] != REFERENCE or len(set(labels)) != len(labels):
        raise ValueError(f"variants {labels}: {REFERENCE!r} must come first (the reference of the "
                         "deltas and of the antibody set), labels must be distinct")
    strangers = sorted(set(pp_args) - set(labels) - {EVERY})
    if strangers:
        raise ValueError(f"--pp-arg names {strangers}: not among the variants run {labels} (or "
                         f"{EVERY}, every variant that has the key)")
    seeded = [f"{name}.seed" for name, values in pp_args.items() if "seed" in values]
    if seeded:
        raise ValueError(f"--pp-arg {seeded}: the training seeds of the test are --seeds")
    every, used = pp_args.get(EVERY, {}), set()
    for v in variants:
        params = resolved_params(v.postprocessor)[0]
        used |= {k for k in every if not params.unknown([k])}
        try:
            resolved_params(v.postprocessor, variant_overrides(v, params, 0, pp_args))
        except ValueError as exc:
            raise ValueError(f"variant {v.label!r}: {exc}") from None
    unused = sorted(set(every) - used)
    if unused:
        raise ValueError(f"--pp-arg {[f'{EVERY}.{k}' for k in unused]}: {', '.join(unused)} is not a "
                         f"parameter of any variant ({', '.join(f'{v.label} = {v.postprocessor}' for v in variants)})")


def run_falsification(data: FalsificationData, seeds: Sequence[int],
                      variants: Sequence[Variant] = DEFAULT_VARIANTS,
                      pp_args: Optional[Mapping[str, Mapping[str, Any]]] = None,
                      temperature: Optional[float] = None,
                      batch_size: int = 1024, provenance: Optional[dict] = None) -> FalsificationResult:
    """Fit every variant at every training seed on ``data`` and measure it.

    A variant whose method has no ``seed`` parameter (MCM) is fitted once: nothing of it
    differs by seed except the antibody set its nearest-antibody cosines are measured against.
    """
    pp_args = dict(pp_args or {})
    seeds = check_seeds(seeds)
    check_variants(variants, pp_args)
    temperature = MCMParams().T if temperature is None else float(temperature)
    per_seed: dict[str, dict[int, dict[str, float]]] = {v.label: {} for v in variants}
    unseeded: dict[str, Any] = {}  # fitted once: their training does not depend on the seed
    described: dict[str, Any] = {}
    for seed in seeds:
        antibodies = None
        for v in variants:
            params = resolved_params(v.postprocessor)[0]
            pp = unseeded.get(v.label)
            if pp is None:
                pp = build_postprocessor(v.postprocessor, **variant_overrides(v, params, seed, pp_args))
                pp.fit(data.net, data.id_features)
                if "seed" not in params.names():
                    unseeded[v.label] = pp
            if antibodies is None:  # the reference (first) variant's filtered antibodies
                antibodies = pp.scorer.antibodies
                if "describe" not in described:  # bank and regime the verdict names
                    described.update(describe=redact_all(pp.describe()),
                                     label=redact(f"{pp.name} {pp.label_suffix()}"))
            per_seed[v.label][seed] = variant_metrics(pp, data, antibodies, temperature, batch_size)
            log.info("falsification seed %d %s: ACC %.2f AUROC near %.2f far %.2f", seed, v.label,
                     per_seed[v.label][seed]["ACC"], per_seed[v.label][seed]["AUROC_near"],
                     per_seed[v.label][seed]["AUROC_far"])
    prov = {"msp_temperature": temperature, "pp_args": pp_args, "near": list(data.near),
            "far": list(data.far), **described, **(provenance or {})}
    return FalsificationResult(list(variants), seeds, per_seed, prov)


# ---- statistics ------------------------------------------------------------------------------
def regime_line(provenance: Mapping[str, Any]) -> str:
    """``bank wordnet (sha256 ...), regime 16-shot x 20, fp32, near-OOD ssb_hard, ninco``: what
    a verdict is about, from the reference variant's ``describe()``."""
    d = provenance.get("describe") or {}
    ab, regime = d.get("antibodies") or {}, d.get("regime") or {}
    bank = f"bank {ab.get('source', '?')}"
    if ab.get("bank_sha256"):
        bank += f" (sha256 {ab['bank_sha256']})"
    if ab.get("bank") not in (None, "wordnet"):
        bank += f", file {ab['bank']}"
    shots = regime.get("shots")
    shots = "all shots" if shots in ("all", 0) else f"{shots}-shot"
    text = f"{bank}; regime {shots} x {regime.get('epochs', '?')} epochs, {regime.get('precision', '?')}"
    if provenance.get("regime_name"):
        text += f" (--regime {provenance['regime_name']})"
    if provenance.get("near"):
        text += f"; near-OOD sets {', '.join(provenance['near'])}"
    return text


def data_from_store(store) -> FalsificationData:
    """The inputs from a :class:`~openood_immuno.experiments.runner.FeatureStore`: its ID splits (lazy,
    shared by every fit) and the cached features of its ID test list and OOD lists, so every
    seed and variant costs no further backbone pass."""
    lists = store.lists
    return FalsificationData(store.net, store.id_features(), store.get("test_imagenet", lists.id["test"]),
                             {n: store.get(n, spec) for n, spec in lists.ood.items()},
                             list(lists.near), list(lists.far))
