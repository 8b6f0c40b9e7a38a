"""Immuno-VLM as OpenOOD postprocessors: ``immuno``, ``immuno_dis``, ``immuno_zeroshot``.

* ``immuno``: geodesic prototypes + vaccinated rejection adapter + DIS + per-class EVT;
* ``immuno_dis``: the same without EVT (conf = DIS);
* ``immuno_zeroshot``: frozen CLIP, text prototypes, no adapter, conf = DIS.

The method is :func:`openood_immuno.immuno.scorer.fit_on_net`; these classes choose the
variant (``vaccinate``, ``calibrate``, the parameter class) and map OpenOOD's calls. The
Table-2 ablations are the ``immuno`` method with other parameters (their ymls).
"""
from __future__ import annotations

from openood_immuno.immuno.params import ImmunoDISParams, ImmunoParams, ImmunoZeroShotParams
from openood_immuno.immuno.scorer import Memo, fit_on_net
from openood_immuno.postprocessor_base import ImmunoPostprocessor


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

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)


class ImmunoVLMPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM: adapter + DIS + per-class EVT calibration (conf = F_pred(DIS))."""

    method = "immuno"
    params_class = ImmunoParams
    vaccinate = True
    calibrate = True

    def artifacts(self) -> dict:
        """Per-class EVT thresholds (DIS where F_c = 0.5) and which classes use the pooled fit."""
        evt = self.scorer.evt
        return {"evt_threshold": evt.thresholds(0.5).numpy(), "evt_pooled": evt.pooled.numpy()}


class ImmunoDISPostprocessor(_ImmunoVLMBase):
    """Immuno-VLM without EVT: adapter + DIS (conf = DIS)."""

    method = "immuno_dis"
    params_class = ImmunoDISParams
    vaccinate = True


class ImmunoZeroShotPostprocessor(_ImmunoVLMBase):
    """Frozen CLIP, text prototypes, antibodies, conf = DIS (no images used)."""

    method = "immuno_zeroshot"
    params_class = ImmunoZeroShotParams
