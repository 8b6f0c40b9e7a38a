"""ANTS as OpenOOD postprocessors: ``ants`` (adaptive), ``ants_ens`` (far_only), ``ants_vsnl``
(near_only). One class, ``method: ants``; each name has its own yml with its ``mode``.

The method is :class:`openood_immuno.methods.ants.ANTSScorer` (over a NegLabel scorer, with the MLLM of
:func:`openood_immuno.methods.ants.load_mllm`); this adapter defines what one "stream" is:

* ``reset_each_list: true`` (default): every scored list (one ``Evaluator.inference`` call, one
  runner ``score_feature_set`` call) is a stream from empty memory;
* ``reset_each_list: false``: memory carries over from list to list in call order; only
  ``fit``/``reset()`` clear it.

MLLM loading failures: with ``mllm_strict: false`` (default) ANTS logs an ERROR and warns,
then scores exactly as NegLabel (``status()['degraded']`` is True); ``mllm_strict: true``
raises at fit instead. Any failed MLLM request (no answer, or an answer with no usable text)
also makes ``status()['degraded']`` True, with the counts in ``degraded_reason`` and
``mllm_cost``; so does a bank the mode reads that ended a stream empty or got usable answers
for fewer than ``min_bank_fill`` of what was asked (``bank_fill``). Without an MLLM by
configuration (``mllm: none``) or with the ``scripted`` test backend, ``status()['stand_in']``
names the mark every output shows (``NO MLLM: NegLabel scores``; ``TEST MLLM: ...``).
"""
from __future__ import annotations

import logging

import torch

from openood_immuno.methods.ants import ANTSParams, ANTSScorer, images_from_tensor, load_mllm
from openood_immuno.methods.neglabel import NegLabelScorer
from openood_immuno.postprocessors.base import ImmunoPostprocessor, require_clip_net

log = logging.getLogger(__name__)


class ANTSPostprocessor(ImmunoPostprocessor):
    """ANTS (Zhu et al.): NegLabel + MLLM-shaped ENS / VSNL negative banks, adaptive fusion."""

    method = "ants"
    params_class = ANTSParams

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self.base = NegLabelScorer(self.params).fit(net)
        self._backend_params = None
        self._build_scorer()
        return self

    def _build_scorer(self) -> None:
        p = self.params
        if self._backend_params is None or p.changed(self._backend_params, ANTSParams.BACKEND):
            self.backend = load_mllm(p, f"ANTS {self.name}")
            self.degraded = self.backend is None and p.mllm.lower() != "none"
            self._backend_params = p
        self.scorer = ANTSScorer(p, self.backend).fit(self.net, self.base)

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self.base = NegLabelScorer(self.params).fit(self.net, reuse=self.base)
            self._build_scorer()

    def _scorer(self) -> ANTSScorer:
        if self.net is None:
            raise RuntimeError(f"{self.name}: call fit(net, id_features) (OpenOOD: setup) first")
        return self.scorer

    def reset(self) -> None:
        if self.net is not None:
            self.scorer.reset()

    def describe(self) -> dict:
        """The MLLM that shapes the negative banks (its spec, as ``mllm``) and whether it loaded."""
        return {"mllm": {"spec": self.params.mllm, "loaded": getattr(self, "backend", None) is not None}}

    def label_suffix(self) -> str:
        """``[MLLM spec]``, e.g. ``ants [hf:Qwen/Qwen2-VL-2B-Instruct]``; nothing without a real MLLM
        (``none``, ``scripted``: the run's stand-in mark, ``[NO MLLM: NegLabel scores]``, says it)."""
        spec = self.params.mllm
        return "" if spec.strip().lower() in ("none", "scripted") else f"[{spec}]"

    def status(self) -> dict:
        """Online state (threshold, bank sizes, lambda), MLLM cost and bank fill, whether ANTS
        degraded (the MLLM failed to load, any of its requests failed, or a bank it reads was left
        empty or short: ``degraded_reason`` says which) and ``stand_in``, the mark of a run
        configured without a real MLLM (``mllm: none``, ``scripted``)."""
        scorer = self._scorer()
        failed = None if self.backend is None else self.backend.cost.failure_note()
        reasons = (["MLLM unavailable: NegLabel scores"] if self.degraded else []) \
            + ([f"MLLM: {failed}"] if failed else []) + scorer.bank_problems()
        stand_in = None
        if self.backend is None and not self.degraded:
            stand_in = "NO MLLM: NegLabel scores"
        elif self.backend is not None and self.backend.spec == "scripted":
            stand_in = "TEST MLLM: scripted answers, not a model"
        return {**scorer.status(), "degraded": bool(reasons),
                "degraded_reason": "; ".join(reasons) or None, "stand_in": stand_in}

    def score_features(self, features, image_paths=None):
        return self._scorer().score(features, image_paths)

    def score_feature_set(self, fs, batch_size=256, progress=False):
        if self.params.reset_each_list:
            self.reset()
        out = super().score_feature_set(fs, batch_size, progress)
        status = self.status()
        # said once while it stays the same (a degraded run: the same status on every list)
        same = status == getattr(self, "_last_logged_status", None)
        log.log(logging.DEBUG if same else logging.INFO, "ANTS %s on %s: %s", self.name, fs.name, status)
        self._last_logged_status = status
        return out

    @torch.no_grad()
    def postprocess(self, net, data):
        """OpenOOD's per-batch path: images recovered from the normalised tensor for the MLLM."""
        require_clip_net(net, f"postprocessor '{self.name}'", images=True)
        scorer = self._scorer()
        features = net.encode_image(data)
        self.check_features(features, "image features of the batch")
        return scorer.score(features, images_from_tensor(data, getattr(net, "preprocess", None)))
