"""Immuno-VLM as OpenOOD postprocessors: ``immuno``, ``immuno_dis``, ``immuno_zeroshot``.

* ``immuno``: geodesic prototypes + vaccinated rejection adapter + DIS + per-class EVT, and
  the EVT decision (reject when ``F_pred(DIS) < tau``);
* ``immuno_dis``: the same without EVT (conf = DIS);
* ``immuno_zeroshot``: frozen CLIP, text prototypes, no adapter, conf = DIS.

The method is :func:`openood_immuno.methods.immuno.scorer.fit_on_net`; these classes choose the
variant (``vaccinate``, ``calibrate``, the parameter class) and map OpenOOD's calls. The
Table-2 ablations and ``immuno_no_antibodies`` are the ``immuno`` method with other
parameters (their ymls).

Every variant installs its classifier in the net (``net.set_adapter(g, mu)``, when the net
has the hook) after fitting: OpenOOD's ACC column (``argmax net(x)``) is then the accuracy of
the variant's own predictions ``argmax_c cos(g(x), mu_c)``. The next postprocessor's ``fit``
removes it (:meth:`ImmunoPostprocessor.fit`); OpenOOD's own postprocessors do not, so call
``net.clear_adapter()`` before evaluating one on the same net.
"""
from __future__ import annotations

import math

from openood_immuno.methods.immuno.params import ImmunoDISParams, ImmunoParams, ImmunoZeroShotParams
from openood_immuno.methods.immuno.scorer import Memo, fit_on_net
from openood_immuno.postprocessors.base import ImmunoPostprocessor


class _ImmunoVLMBase(ImmunoPostprocessor):
    """Shared fit/score; subclasses choose ``vaccinate`` (adapter) and ``calibrate`` (EVT)."""

    vaccinate = False
    calibrate = False

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self._id_features = id_features
        self._memo = Memo()
        self._build()
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self._build()

    def _build(self) -> None:
        self.scorer = fit_on_net(self.net, self._id_features, self.params, self.vaccinate,
                                 self.calibrate, self._memo)
        install = getattr(self.net, "set_adapter", None)
        if install is not None:
            install(self.scorer.adapter, self.scorer.prototypes, owner=self.name)

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)

    def describe(self) -> dict:
        """Antibody source and bank (:func:`~openood_immuno.methods.immuno.scorer.describe_antibodies`),
        the training regime (variants with an adapter) and what the EVT was fitted on."""
        self._require_fit()
        out = {"antibodies": dict(self.scorer.antibody_source or {})}
        if self.vaccinate:
            p = self.params
            out["regime"] = {"shots": p.shots, "epochs": p.epochs, "precision": p.precision,
                             "max_train": p.max_train}
        evt = self.scorer.evt
        if evt is not None:
            out["evt"] = {**(self.scorer.evt_source or {}), "classes": int(evt.pooled.numel()),
                          "per_class_fits": int((~evt.pooled).sum()), "all_pooled": evt.all_pooled,
                          "censored": self.params.evt_censored, "tail": self.params.evt_tail,
                          "tau": self.params.tau}
        return out

    def label_suffix(self) -> str:
        """``[SOURCE, SHOTS-shot x EPOCHS]`` (``zero-shot`` without an adapter; ``, bf16`` for bf16
        training; ``, EVT pooled`` when every class uses the pooled Weibull; ``, EVT on val``
        when the EVT was fitted on the validation list)."""
        d = self.describe()
        parts = [d["antibodies"].get("source", "?")]
        if "regime" in d:
            r = d["regime"]
            shots = "all shots" if r["shots"] in ("all", 0) else f"{r['shots']}-shot"
            parts.append(f"{shots} x {r['epochs']}" + (f", {r['precision']}" if r["precision"] != "fp32" else ""))
        else:
            parts.append("zero-shot")
        evt = d.get("evt")
        if evt is not None and evt.get("all_pooled"):
            parts.append("EVT pooled")
        elif evt is not None and evt.get("fit") == "val":
            parts.append("EVT on val")
        return f"[{', '.join(parts)}]"


class ImmunoVLMPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM: adapter + DIS + per-class EVT calibration (conf = H_pred or F_pred of DIS)."""

    method = "immuno"
    params_class = ImmunoParams
    trains = True
    vaccinate = True
    calibrate = True

    def decision_threshold(self) -> float:
        """The conf of ``F_pred(DIS) = tau``: ``tau`` (``evt_output: cdf``) or
        ``-log(1 - tau)`` (``hazard``); a sample with a lower conf is rejected as OOD.

        The paper's decision (Sec. 3.6): reject ``x`` when ``F_pred(DIS(x)) < tau``. ``F_c`` is
        the Weibull of class ``c`` fitted on held-out ID images (``evt_fit``; by default
        ``evt_per_class`` = 100 training images per class not drawn for vaccination) with its
        lower tail as a censored sample of the whole class (``evt_censored``), so the decision
        rejects a share ``tau`` of ID images when the fit holds. Measured on a 1000-class
        synthetic probe (``python -m openood_immuno.methods.immuno.evt_probe``), tau = 0.05:
        4.5-5.6% of held-out ID rejected with this default; 9.2-12.5% when fitted on 5
        validation images per class (OpenOOD's ImageNet val list, ``evt_fit: val``). Results
        report the measured share on the ID test set as ``ID_reject@tau``
        (docs/immuno_vlm.md, "EVT decision and F1@tau")."""
        tau = self.params.tau
        return tau if self.params.evt_output == "cdf" else -math.log1p(-tau)

    def status(self) -> dict:
        """What the EVT was fitted on (information), and a ``note`` when every class uses the
        pooled Weibull (conf then ranks exactly as ``immuno_dis``: AUROC/FPR are immuno_dis's)
        or when the fit fell back to the validation list."""
        self._require_fit()
        evt, source = self.scorer.evt, self.scorer.evt_source or {}
        out = {"evt_fit": f"{source.get('fit', '?')} ({source.get('images', '?')} images), per-class "
                          f"Weibull for {int((~evt.pooled).sum())} of {evt.pooled.numel()} classes"}
        notes = [source["note"]] if source.get("note") else []
        if evt.all_pooled:
            notes.append(f"EVT: every class uses the pooled Weibull fit ({evt.samples} fit images for "
                         f"{evt.pooled.numel()} classes), so conf ranks exactly as immuno_dis: AUROC "
                         "and FPR@95 are immuno_dis's; only the decision (F1@tau, ID_reject@tau) differs")
        if notes:
            out["note"] = "; ".join(notes)
        return out

    def artifacts(self) -> dict:
        """Per-class EVT thresholds (DIS where F_c = 0.5 and where F_c = tau) and which classes
        use the pooled fit."""
        evt = self.scorer.evt
        return {"evt_threshold": evt.thresholds(0.5).numpy(),
                "evt_reject_below": evt.thresholds(self.params.tau).numpy(),
                "evt_pooled": evt.pooled.numpy()}


class ImmunoDISPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM without EVT: adapter + DIS (conf = DIS)."""

    method = "immuno_dis"
    params_class = ImmunoDISParams
    trains = True
    vaccinate = True


class ImmunoZeroShotPostprocessor(_ImmunoVLMBase):
    """Frozen CLIP, text prototypes, antibodies, conf = DIS (no images used)."""

    method = "immuno_zeroshot"
    params_class = ImmunoZeroShotParams
