"""Immuno-VLM as OpenOOD postprocessors: ``immuno``, ``immuno_dis``, ``immuno_zeroshot``.

* ``immuno``: geodesic prototypes + vaccinated rejection adapter + DIS + per-class EVT;
* ``immuno_dis``: the same without EVT (conf = DIS);
* ``immuno_zeroshot``: frozen CLIP, text prototypes, no adapter, conf = DIS.

These classes only turn names into embeddings with the CLIP net (ID prompts ``templates``;
near-OOD antibodies with ``near_template``, contextual ones with ``contextual_template``)
and hand them to :func:`openood_immuno.immuno.pipeline.build_scorer`, which is the method.

Antibodies: ``antibody_bank: wordnet`` (default) builds the WordNet bank of the net's class
names on first use, cached in ``cache_dir('antibodies')`` under a key of the class names and
generator settings; any other value is the path of a bank JSON made by ``openood-immuno
antibodies`` (e.g. with an LLM). The Table-2 ablations are the ``immuno`` method with
``antibody_source: gaussian_noise | random_words`` or an open band (``delta_low: -1``,
``delta_high: 1``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from openood_immuno.cache import cache_dir, content_key
from openood_immuno.immuno.adapter import few_shot_indices
from openood_immuno.immuno.antibodies import Antibody, AntibodyBank, BankError
from openood_immuno.immuno.encode import encode_antibodies
from openood_immuno.immuno.generators import build_bank, id_classes
from openood_immuno.immuno.pipeline import ImmunoParams, build_scorer
from openood_immuno.postprocessor_base import ImmunoPostprocessor

log = logging.getLogger(__name__)
_P = ImmunoParams()
_SCORE_DEFAULTS = {
    "templates": ["a photo of a {}."], "antibody_bank": "wordnet", "n_near": 10, "n_contextual": 5,
    "near_template": "a photo of a {}.", "contextual_template": "a photo of {}.",
    "lambda": _P.lam, "delta_low": _P.delta_low, "delta_high": _P.delta_high,
    "antibody_source": _P.antibody_source, "noise_sigma": _P.noise_sigma, "seed": _P.seed,
}
_ADAPTER_DEFAULTS = {name: getattr(_P, name) for name in (
    "theta_deg", "kappa_min_samples", "shots", "max_train", "adapter_hidden", "epochs", "lr",
    "batch_size", "weight_decay", "beta", "margin", "margin_quantile", "hard_k")}
_EVT_DEFAULTS = {"evt_tail": _P.evt_tail, "evt_min_samples": _P.evt_min_samples,
                 "evt_output": _P.evt_output}


def wordnet_bank(class_names: list[str], n_near: int, n_contextual: int, seed: int) -> AntibodyBank:
    """The WordNet bank of ``class_names``, built once and cached."""
    from openood_immuno.immuno.wordnet_gen import (CONTEXT_PATTERNS, WORDNET_GENERATOR_VERSION,
                                                   WordNetGenerator)

    key = content_key("wordnet-bank", WORDNET_GENERATOR_VERSION, CONTEXT_PATTERNS, class_names,
                      n_near, n_contextual, seed)
    path = cache_dir("antibodies") / f"wordnet-{key}.json"
    if path.is_file():
        try:
            bank = AntibodyBank.load(path)
        except BankError as exc:  # a damaged cache file: rebuild it
            log.warning("cached WordNet bank %s is unreadable (%s): rebuilding it", path, exc)
            path.unlink()
        else:
            if not bank.missing():
                return bank
    log.info("building the WordNet antibody bank for %d classes (cached in %s)", len(class_names), path)
    bank = build_bank(WordNetGenerator(n_near, n_contextual, seed=seed), id_classes(class_names),
                      path, short_log_level=logging.DEBUG)
    if bank.short:
        log.info("WordNet bank: %d of %d classes have fewer antibodies than asked (see 'short' in %s)",
                 len(bank.short), len(set(class_names)), path)
    return bank


class _ImmunoVLMBase(ImmunoPostprocessor):
    """Shared fit/score; subclasses choose ``vaccinate`` (adapter) and ``calibrate`` (EVT)."""

    vaccinate = False
    calibrate = False

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self._id_features = id_features
        self._memo: dict[str, tuple[str, object]] = {}
        self._build()
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self._build()

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)

    # ---- embeddings -----------------------------------------------------------------------
    def _cached(self, stage: str, key: str, compute):
        if stage not in self._memo or self._memo[stage][0] != key:
            self._memo[stage] = (key, compute())
        return self._memo[stage][1]

    def _bank(self) -> AntibodyBank:
        a, names = self.args, list(self.net.class_names)
        spec = str(a["antibody_bank"])

        def load():
            if spec == "wordnet":
                return wordnet_bank(names, int(a["n_near"]), int(a["n_contextual"]), int(a["seed"]))
            bank = AntibodyBank.load(Path(spec).expanduser())
            bank.require_complete(names, f"antibody bank {spec!r}")
            return bank

        key = content_key(spec, names, a["n_near"], a["n_contextual"], a["seed"]) if spec == "wordnet" \
            else content_key(spec, names)
        return self._cached("bank", key, load)

    def _antibody_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeddings [M, d], owner [M])`` of every class's antibodies (or random words)."""
        a, net = self.args, self.net
        bank = self.bank = self._bank()
        per_class = [bank.antibodies_for(n) for n in net.class_names]
        key = content_key(bank.digest(), a["antibody_source"], a["seed"], a["near_template"],
                          a["contextual_template"], net.identity)

        def embed():
            classes = per_class
            if a["antibody_source"] == "random_words":
                from openood_immuno.immuno.wordnet_gen import random_wordnet_words

                words = random_wordnet_words([len(v) for v in per_class], id_classes(net.class_names),
                                             int(a["seed"]))
                classes = [[Antibody(w, "near_ood", "random-wordnet-noun") for w in ws] for ws in words]
            return encode_antibodies(net, classes, {"near_ood": a["near_template"],
                                                    "contextual": a["contextual_template"]})

        return self._cached("antibodies", key, embed)

    def _train_features(self, params: ImmunoParams):
        """ID training features; with ``shots``/``max_train`` only the drawn images are encoded.

        The draw (:func:`few_shot_indices`) is made from the list file before any backbone pass
        when ``id_features`` can do so (``LazyFeatures.subset``); :func:`build_scorer` draws
        again from the result, which then keeps every image, so both paths train on the same set.
        """
        subset = getattr(self._id_features, "subset", None)
        if subset is None or (params.shots <= 0 and params.max_train <= 0):
            return self._id_features["train"]
        return subset("train", lambda labels, paths: few_shot_indices(
            labels, paths, params.shots, params.max_train, params.seed))

    def _build(self) -> None:
        net, a = self.net, self.args
        params = ImmunoParams.from_args(a)
        text = net.encode_text(net.class_names, a["templates"]).float()
        antibodies, owner = self._antibody_embeddings()
        train = val = None
        if self.vaccinate and "train" in self._id_features:
            fs = self._train_features(params)
            train = (fs.features, fs.labels, fs.image_paths)
        if self.calibrate and "val" in self._id_features:
            fs = self._id_features["val"]
            val = (fs.features, fs.labels)
        self.scorer = build_scorer(text, antibodies, owner, params, train, val, self.vaccinate,
                                   self.calibrate, identity=net.identity)


class ImmunoVLMPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM: adapter + DIS + per-class EVT calibration (conf = F_pred(DIS))."""

    method = "immuno"
    defaults = {**_SCORE_DEFAULTS, **_ADAPTER_DEFAULTS, **_EVT_DEFAULTS}
    vaccinate = True
    calibrate = True

    def artifacts(self) -> dict:
        """Per-class EVT thresholds (DIS where F_c = 0.5) and which classes use the pooled fit."""
        evt = self.scorer.evt
        return {"evt_threshold": evt.thresholds(0.5).numpy(), "evt_pooled": evt.pooled.numpy()}


class ImmunoDISPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM without EVT: adapter + DIS (conf = DIS)."""

    method = "immuno_dis"
    defaults = {**_SCORE_DEFAULTS, **_ADAPTER_DEFAULTS}
    vaccinate = True


class ImmunoZeroShotPostprocessor(_ImmunoVLMBase):
    """Frozen CLIP, text prototypes, antibodies, conf = DIS (no images used)."""

    method = "immuno_zeroshot"
    defaults = dict(_SCORE_DEFAULTS)
