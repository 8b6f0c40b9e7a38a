"""OpenOOD's classic postprocessors on the CLIP net, scored from cached features (one class per
OpenOOD name; the scorers are :mod:`openood_immuno.methods.classic`).

Each gives, on the same features, the per-sample scores of OpenOOD's own postprocessor of the same
name run on the CLIP net (``Evaluator(net, postprocessor_name=NAME)``), without a backbone pass per
method and without CUDA. ``register()`` leaves those names to OpenOOD in OpenOOD's tables; these
classes are what ``openood-immuno eval --postprocessors NAME`` and ``build_postprocessor(NAME)`` use.
"""
from __future__ import annotations

from typing import ClassVar

from openood_immuno.methods.classic import CLASSIC, ClassicScorer
from openood_immuno.postprocessors.base import ImmunoPostprocessor


class ClassicPostprocessor(ImmunoPostprocessor):
    """Thin adapter: the net's linear head (``net.head()``: ``W = logit_scale * t``, ``b = 0``) and
    the ID split the method reads (``scorer_class.split``) go to the scorer."""

    scorer_class: ClassVar[type[ClassicScorer]] = ClassicScorer
    openood_builtin = True

    def fit(self, net, id_features):
        super().fit(net, id_features)
        weight, bias = net.head()
        self.scorer = self.scorer_class(self.params, weight, bias)
        split = self.scorer_class.split
        if split is None:
            return self
        if split not in id_features:
            raise KeyError(f"postprocessor '{self.name}' needs the ID {split} features (OpenOOD's setup "
                           f"reads id_loader_dict['{split}']): the benchmark has no ID {split} list; add "
                           f"benchmark_imglist/<id>/{split}_<id>.txt under the data root")
        self.scorer.fit(id_features[split])
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self.scorer.params = self.params
            self.scorer.refresh()

    def score_features(self, features, image_paths=None):
        pred, conf = self.scorer.score(features)
        return pred.to(features.device), conf.to(features.device)


class MSPPostprocessor(ClassicPostprocessor):
    method = "msp"
    params_class, scorer_class = CLASSIC["msp"]


class EBOPostprocessor(ClassicPostprocessor):
    method = "ebo"
    params_class, scorer_class = CLASSIC["ebo"]


class MLSPostprocessor(ClassicPostprocessor):
    method = "mls"
    params_class, scorer_class = CLASSIC["mls"]


class GENPostprocessor(ClassicPostprocessor):
    method = "gen"
    params_class, scorer_class = CLASSIC["gen"]


class GradNormPostprocessor(ClassicPostprocessor):
    method = "gradnorm"
    params_class, scorer_class = CLASSIC["gradnorm"]


class ReActPostprocessor(ClassicPostprocessor):
    method = "react"
    params_class, scorer_class = CLASSIC["react"]


class ASHPostprocessor(ClassicPostprocessor):
    method = "ash"
    params_class, scorer_class = CLASSIC["ash"]


class SCALEPostprocessor(ClassicPostprocessor):
    method = "scale"
    params_class, scorer_class = CLASSIC["scale"]


class DICEPostprocessor(ClassicPostprocessor):
    method = "dice"
    params_class, scorer_class = CLASSIC["dice"]


class KNNPostprocessor(ClassicPostprocessor):
    method = "knn"
    params_class, scorer_class = CLASSIC["knn"]


class VIMPostprocessor(ClassicPostprocessor):
    method = "vim"
    params_class, scorer_class = CLASSIC["vim"]


class MDSPostprocessor(ClassicPostprocessor):
    method = "mds"
    params_class, scorer_class = CLASSIC["mds"]


class RMDSPostprocessor(ClassicPostprocessor):
    method = "rmds"
    params_class, scorer_class = CLASSIC["rmds"]


class KLMPostprocessor(ClassicPostprocessor):
    method = "klm"
    params_class, scorer_class = CLASSIC["klm"]


class SHEPostprocessor(ClassicPostprocessor):
    method = "she"
    params_class, scorer_class = CLASSIC["she"]


class FDBDPostprocessor(ClassicPostprocessor):
    method = "fdbd"
    params_class, scorer_class = CLASSIC["fdbd"]


class NCIPostprocessor(ClassicPostprocessor):
    method = "nci"
    params_class, scorer_class = CLASSIC["nci"]
