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


class ImmunoVLMPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM: adapter + DIS + per-class EVT calibration (conf = H_pred or F_pred of DIS)."""

    method = "immuno"
    params_class = ImmunoParams
    trains = True
    vaccinate = True
    calibrate = True

    def decision_threshold(self) -> float:
        """The conf of ``F_pred(DIS) = tau``: ``tau`` (``evt_output: cdf``) or
        ``-log(1 - tau)`` (``hazard``); a sample with a lower conf is rejected as OOD."""
        tau = self.params.tau
        return tau if self.params.evt_output == "cdf" else -math.log1p(-tau)

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
