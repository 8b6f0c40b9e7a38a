"""Base class of every openood-immuno postprocessor: OpenOOD's contract, feature-level scoring.

It subclasses OpenOOD's ``BasePostprocessor`` when OpenOOD is importable and an equivalent
base otherwise, so the package works (and is tested) without OpenOOD.

A scorer implements two methods on L2-normalised CLIP image features:

* ``fit(net, id_features)``: build text banks with ``net.encode_text`` and, where the method
  trains or calibrates, read ``id_features['train']`` / ``['val']`` (lazy :class:`FeatureSet`);
* ``score_features(features, image_paths=None) -> (pred, conf)``, higher ``conf`` = more ID;
  a scorer with ``needs_local_features`` (GL-MCM) also gets ``local=`` ``[B, P, d]`` per-patch
  features, extracted in the same backbone pass (:mod:`openood_immuno.data.local_features`).

Parameters are one frozen dataclass per method (``params_class``, e.g.
:class:`~openood_immuno.methods.mcm.params.MCMParams`), built and validated once from the config's
``postprocessor_args`` (``self.params``); ``args_dict`` (OpenOOD's APS grid) comes from the
dataclass's sweep lists and the config's ``postprocessor_sweep``.

The OpenOOD methods (``setup``, ``postprocess``, ``inference``, ``args_dict``,
``set_hyperparam``, ``get_hyperparam``) are derived from these. ``inference`` runs on the
net's device (OpenOOD's moves every batch with ``Tensor.cuda``) and reuses cached features.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from openood_immuno.data.features import FeatureSet, LazyFeatures, check_features, extract_features
from openood_immuno.data.local_features import encode_with_local
from openood_immuno.core.params import Params

log = logging.getLogger(__name__)


def _openood_base():
    try:
        from openood.postprocessors.base_postprocessor import BasePostprocessor
    except ImportError:
        return None
    except Exception as exc:  # OpenOOD present but broken: say so, run without it
        log.warning("OpenOOD is installed but failed to import (%s): running standalone", exc)
        return None
    return BasePostprocessor


class _StandaloneBasePostprocessor:
    """Stand-in for ``openood.postprocessors.BasePostprocessor`` when OpenOOD is absent."""

    def __init__(self, config):
        self.config = config


OPENOOD_BASE = _openood_base()
BasePostprocessor = OPENOOD_BASE or _StandaloneBasePostprocessor


# what fitting reads of a net (text side), and what scoring images adds
CLIP_NET_ATTRIBUTES = ("encode_text", "class_names", "identity")
CLIP_IMAGE_ATTRIBUTES = ("encode_image",)


class NotACLIPNet(TypeError, ValueError):
    """A net without the CLIP interface of :func:`openood_immuno.build_clip_net`."""


def require_clip_net(net, who: str, images: bool = False) -> None:
    """One line when ``net`` is not a CLIP net of :func:`openood_immuno.build_clip_net` (an OpenOOD
    ResNet, a bare open_clip model, ...): our postprocessors fit on text embeddings of the ID
    ``class_names`` (``encode_text``, ``identity``) and, with ``images``, score ``encode_image``
    features."""
    wanted = CLIP_NET_ATTRIBUTES + (CLIP_IMAGE_ATTRIBUTES if images else ())
    missing = [a for a in wanted if not hasattr(net, a)]
    if missing:
        raise NotACLIPNet(f"{who} needs a CLIP net built by openood_immuno.build_clip_net(model, pretrained, "
                          f"class_names) (in OpenOOD configs: network.name: clip), got a "
                          f"{type(net).__name__} without {', '.join(missing)}")


class ImmunoPostprocessor(BasePostprocessor):
    """Feature-level scorer with OpenOOD's postprocessor interface.

    Subclasses set ``method`` (matched by the yml's ``postprocessor.method``) and
    ``params_class`` (the method's parameter dataclass: names, types, defaults, sweep lists;
    unknown names and invalid values in a config are rejected here, before any work).
    """

    method: ClassVar[str] = ""
    params_class: ClassVar[type[Params]] = Params
    #: ``fit`` trains with ``params.seed`` (a ``seed`` parameter): the runner refits once per
    #: ``--seeds`` value, so a reported std covers the training randomness.
    trains: ClassVar[bool] = False
    #: the name is one of OpenOOD's own postprocessors, re-derived here on cached features:
    #: ``register()`` leaves that name to OpenOOD's implementation in OpenOOD's tables.
    openood_builtin: ClassVar[bool] = False
    #: ``score_features`` reads per-patch features (``local=``): feature extraction (runner,
    #: ``setup``, ``inference``, ``postprocess``) then gives them, in the same backbone pass.
    needs_local_features: ClassVar[bool] = False

    def __init__(self, config):
        super().__init__(config)
        pp = config["postprocessor"]
        self.name = pp.get("name", self.method)
        self.params, self.args_dict = self.params_class.from_config(
            pp.get("postprocessor_args"), pp.get("postprocessor_sweep"),
            where=f"postprocessor '{self.name}'", prefix=f"{self.name}.")
        self.APS_mode = bool(pp.get("APS_mode", False))
        self.hyperparam_search_done = False
        self.net = None

    @property
    def args(self) -> dict[str, Any]:
        """The resolved parameters by yml name (defaults filled in), e.g. for a run manifest."""
        return self.params.as_args()

    def check_resources(self) -> None:
        """Every external resource the parameters need (``params.resources()``: the WordNet
        corpus), checked in milliseconds; the commands call it before any model is built."""
        for resource in self.params.resources():
            if resource == "wordnet":
                from openood_immuno.data.wordnet import require_wordnet

                require_wordnet(f"postprocessor '{self.name}'")

    # ---- the method -------------------------------------------------------------------
    def fit(self, net, id_features: Mapping[str, FeatureSet]) -> "ImmunoPostprocessor":
        """Prepare the scorer (text banks, training, calibration). Returns ``self``.

        Removes any adapter hook left on the net (``net.clear_adapter()``) by a postprocessor
        fitted before: ``net(x)`` is zero-shot again unless this one installs its own.
        """
        require_clip_net(net, f"postprocessor '{self.name}'")
        clear = getattr(net, "clear_adapter", None)
        if clear is not None:
            clear()
        self.net = net
        return self

    def score_features(self, features: torch.Tensor,
                       image_paths: Optional[Sequence[str]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, conf)`` for a batch of unit-norm image features; higher conf = more ID."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget test-time state (online methods); a no-op for stateless scorers."""

    def artifacts(self) -> dict:
        """Arrays worth keeping beside the results (e.g. per-class thresholds); none here."""
        return {}

    def decision_threshold(self) -> Optional[float]:
        """The ``conf`` below which this postprocessor itself rejects a sample as OOD (results
        then carry F1@tau), or ``None`` for a score without a decision rule (here)."""
        return None

    def describe(self) -> dict:
        """What every result of this postprocessor must name beside its metrics (run.json's
        ``describe``): the source of its text bank (antibodies, negative labels, MLLM) with the
        bank's SHA-256, its training regime. Empty here (a scorer with nothing to name)."""
        return {}

    def label_suffix(self) -> str:
        """The regime part of every result label (console, ood.csv, report.md, leaderboard), e.g.
        ``[wordnet, 16-shot x 20]`` for ``immuno [wordnet, 16-shot x 20]``; empty here."""
        return ""

    def status(self) -> dict:
        """What a run should report beside its metrics (online state, degradation); empty here."""
        return {}

    def on_hyperparam_change(self) -> None:
        """Called after ``set_hyperparam``; refits what depends on the changed values."""

    # ---- OpenOOD's interface ------------------------------------------------------------
    def setup(self, net, id_loader_dict, ood_loader_dict) -> None:
        require_clip_net(net, f"postprocessor '{self.name}'", images=True)
        net.eval()  # OpenOOD calls setup() before net.eval() (OpenOOD issue #216)
        self.fit(net, LazyFeatures(net, id_loader_dict, local=self.needs_local_features))

    def set_hyperparam(self, hyperparam: Sequence[Any]) -> None:
        """OpenOOD's APS step: new values of the swept parameters, in ``args_dict`` order
        (validated like the config)."""
        self.params = self.params.replace(dict(zip(self.args_dict, hyperparam)),
                                          where=f"postprocessor '{self.name}'", prefix=f"{self.name}.")
        self.on_hyperparam_change()

    def get_hyperparam(self) -> list[Any]:
        return [self.params.get(name) for name in self.args_dict]

    @torch.no_grad()
    def postprocess(self, net, data: torch.Tensor):
        self._require_fit()
        require_clip_net(net, f"postprocessor '{self.name}'", images=True)
        if self.needs_local_features:
            features, local = encode_with_local(net, data)
            self.check_features(features, "image features of the batch")
            return self.score_features(features, local=local)
        features = net.encode_image(data)
        self.check_features(features, "image features of the batch")
        return self.score_features(features)

    def _require_fit(self) -> None:
        if self.net is None:
            raise RuntimeError(f"postprocessor '{self.name}' is not fitted: call fit(net, id_features) "
                               "(OpenOOD calls setup(), which does) before scoring")

    @torch.no_grad()
    def inference(self, net, data_loader: DataLoader, progress: bool = True):
        """OpenOOD's ``inference`` on cached features, on the net's device."""
        require_clip_net(net, f"postprocessor '{self.name}'", images=True)
        fs = extract_features(net, data_loader, progress=progress, local=self.needs_local_features)
        return self.score_feature_set(fs, data_loader.batch_size or 256, progress)

    def check_features(self, features: torch.Tensor, what: str = "image features") -> None:
        """:func:`~openood_immuno.data.features.check_features` against the fitted net's dimension."""
        check_features(features, getattr(self.net, "embed_dim", None), what)

    def score_feature_set(self, fs: FeatureSet, batch_size: int = 256, progress: bool = False):
        """Score a whole :class:`FeatureSet` in list order -> numpy ``(pred, conf, label)``."""
        self._require_fit()
        self.check_features(fs.features, f"features of '{fs.name}'")
        if self.needs_local_features and fs.local is None:
            raise ValueError(f"postprocessor '{self.name}' needs local (per-patch) features but '{fs.name}' "
                             "holds global ones only: extract them with extract_features(..., local=True)")
        preds, confs = [], []
        for i, (feats, _, paths) in enumerate(tqdm(fs.batches(batch_size), total=-(-len(fs) // batch_size),
                                                   desc=f"{self.name} {fs.name}", disable=not progress)):
            extra = {"local": fs.local[i * batch_size:(i + 1) * batch_size]} if self.needs_local_features else {}
            pred, conf = self.score_features(feats, paths, **extra)
            preds.append(pred.cpu())
            confs.append(conf.float().cpu())
        return (torch.cat(preds).numpy().astype(int), torch.cat(confs).numpy(),
                fs.labels.numpy().astype(int))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, args={self.args})"


class ScorerPostprocessor(ImmunoPostprocessor):
    """An adapter whose method is one fitted scorer of the net's text side (MCM, NegLabel, CSP, EOE,
    GL-MCM, NegRefine): ``fit`` builds ``scorer_type(params).fit(net)``; after an APS step the
    scorer is rebuilt with ``reuse=`` the previous one, which keeps its text banks unless a
    parameter they depend on changed (each scorer's ``fit`` states its rule)."""

    scorer_type: ClassVar[type] = type(None)

    def fit(self, net, id_features: Mapping[str, FeatureSet]) -> "ScorerPostprocessor":
        super().fit(net, id_features)
        self.scorer = self.scorer_type(self.params).fit(net)
        return self

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self.scorer = self.scorer_type(self.params).fit(self.net, reuse=self.scorer)
