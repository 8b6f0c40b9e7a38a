"""AdaNeg as an OpenOOD postprocessor (name ``adaneg``): :class:`openood_immuno.methods.adaneg.AdaNegScorer`
over a :class:`openood_immuno.methods.neglabel.NegLabelScorer` (its negatives, its grouped score).

Score: :mod:`openood_immuno.scores.adaneg`. The score depends on the order of the test stream
(the memory caches test features); this adapter defines what one stream is, as ANTS's does:

* ``reset_each_list: true`` (default): every scored list (one ``Evaluator.inference`` call, one
  runner ``score_feature_set`` call) is a stream from an empty memory;
* ``reset_each_list: false``: the memory carries over from list to list in call order; only
  ``fit``/``reset()`` clear it.

The authors' order is the runner's ``stream`` protocol (each OOD set shuffled with the ID test
set, memory reset before each); ``status()['order']`` names the rule a result was scored under.
"""
from __future__ import annotations

from openood_immuno.methods.adaneg import AdaNegParams, AdaNegScorer
from openood_immuno.methods.neglabel import NegLabelScorer
from openood_immuno.postprocessors.base import ImmunoPostprocessor


class AdaNegPostprocessor(ImmunoPostprocessor):
    """AdaNeg (Zhang & Zhang, 2024): NegLabel + adaptive proxies from a test-time feature memory."""

    method = "adaneg"
    params_class = AdaNegParams

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self.base = NegLabelScorer(self.params).fit(net)
        self.scorer = AdaNegScorer(self.params).fit(self.base)
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self.base = NegLabelScorer(self.params).fit(self.net, reuse=self.base)
            self.scorer = AdaNegScorer(self.params).fit(self.base)

    def _scorer(self) -> AdaNegScorer:
        self._require_fit()
        return self.scorer

    def reset(self) -> None:
        if self.net is not None:
            self.scorer.reset()

    def order(self) -> str:
        """The memory's rule over the scored lists, as results name it."""
        return ("memory reset before each scored list (reset_each_list)" if self.params.reset_each_list
                else "memory carried over the scored lists in call order")

    def describe(self) -> dict:
        p = self.params
        return {"memory": {"order": self.order(), "capacity": p.capacity,
                           "proxies": "sample-adaptive" if p.sample_adaptive else "task-adaptive"}}

    def status(self) -> dict:
        return {**self._scorer().status(), "order": self.order()}

    def score_features(self, features, image_paths=None):
        return self._scorer().score(features)

    def score_feature_set(self, fs, batch_size=256, progress=False):
        if self.params.reset_each_list:
            self.reset()
        return super().score_feature_set(fs, batch_size, progress)
