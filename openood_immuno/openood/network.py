"""CLIP as an OpenOOD network (``network.name: clip``) and preprocessor (``preprocessor.name: clip``).

OpenOOD v1.5 builds the net of its ``main.py`` pipelines with
``openood.networks.utils.get_network(network_config)`` and the image transforms with
``openood.preprocessors.utils.get_preprocessor(config, split)``; both are plain functions with
local name tables, imported by name into the modules that call them. :func:`register_clip`
wraps both (other names go to OpenOOD's originals) and rebinds them in those modules.

``network`` fields: ``name: clip``, ``class_names`` (``'@{dataset.name}'``: an ID set of
:mod:`openood_immuno.data.classnames`, or a class-name file) and ``num_classes``
(``'@{dataset.num_classes}'``, checked against the class names), which
``configs/networks/clip.yml`` sets, and the fields of
:class:`~openood_immuno.openood.network_params.CLIPNetworkParams` (``model``, ``pretrained``,
``templates``, ``device``, ``seed``), whose defaults live there.

The net is placed on ``device`` and never moved with ``Tensor.cuda`` (it ignores ``num_gpus``), so a
``main.py`` run with our postprocessors, whose ``inference`` uses the net's device, runs on a CPU.
``preprocessor.name: clip`` gives every split (train included: the backbone is frozen) the
transform of that CLIP model (``net.preprocess``), so it needs ``network.name: clip``. One net
is built per network config and process, shared by the preprocessor and the network.
"""
from __future__ import annotations

import importlib
import inspect
import sys

import torch

from openood_immuno.models.clip_net import CLIPNet, build_clip_net
from openood_immuno.data.classnames import resolve_class_names
from .network_params import NAME, CLIPNetworkParams

_WRAPPED = "_openood_immuno_wrapped"
_NETS: dict[tuple, CLIPNet] = {}


def clip_net_from_config(network_config) -> CLIPNet:
    """The :class:`CLIPNet` of a ``network.name: clip`` config (built once per process)."""
    p = CLIPNetworkParams.of(network_config)
    class_names = network_config.get("class_names")
    if class_names is None:
        raise ValueError("network.class_names is missing: set it to '@{dataset.name}' (as "
                         "configs/networks/clip.yml does) or to a class-name file")
    device = p.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = tuple(resolve_class_names(class_names))
    num_classes = network_config.get("num_classes")
    if num_classes is not None and int(num_classes) != len(names):
        raise ValueError(f"network.class_names {class_names!r} has {len(names)} classes but "
                         f"dataset.num_classes is {num_classes}: use the class names of the ID dataset")
    key = (p.model, p.pretrained, p.templates, names, device, p.seed)
    if key not in _NETS:
        _NETS[key] = build_clip_net(p.model, p.pretrained, list(names), p.templates, device, p.seed)
    return _NETS[key]


class CLIPPreprocessor:
    """OpenOOD preprocessor (``__call__(image)``, ``setup(**kwargs)``) applying CLIP's transform."""

    def __init__(self, config):
        if (config.get("network") or {}).get("name") != NAME:
            raise ValueError("preprocessor.name: clip uses the transform of the CLIP network: set "
                             "network.name: clip (configs/networks/clip.yml)")
        self.transform = clip_net_from_config(config["network"]).preprocess

    def setup(self, **kwargs) -> None:
        """OpenOOD calls this per image; the transform has no state."""

    def __call__(self, image):
        return self.transform(image)

    def __repr__(self) -> str:  # feature caches key on the transform
        return repr(self.transform)


def _check_openood_version(net_utils, pre_utils) -> None:
    problems = []
    get_network = getattr(net_utils, "get_network", None)
    if get_network is None or list(inspect.signature(get_network).parameters) != ["network_config"]:
        problems.append("openood.networks.utils.get_network(network_config)")
    get_pre = getattr(pre_utils, "get_preprocessor", None)
    if get_pre is None or list(inspect.signature(get_pre).parameters)[:2] != ["config", "split"]:
        problems.append("openood.preprocessors.utils.get_preprocessor(config, split)")
    if problems:
        raise RuntimeError("incompatible OpenOOD version: openood-immuno needs OpenOOD v1.5, which has "
                           + "; ".join(problems) + ". Install OpenOOD v1.5 from its git repository")


def _rebind(attr: str, function, modules: list[str]) -> None:
    """Replace ``attr`` in every listed module that has it, and in every loaded OpenOOD pipeline."""
    names = modules + [m for m in list(sys.modules) if m.startswith("openood.pipelines.")]
    for mod_name in names:
        try:
            module = importlib.import_module(mod_name)
        except Exception:  # a pipeline whose own imports fail cannot be used anyway
            module = sys.modules.get(mod_name)
        if module is not None and hasattr(module, attr):
            setattr(module, attr, function)


def register_clip() -> None:
    """Make ``network.name: clip`` and ``preprocessor.name: clip`` work in OpenOOD's pipelines.

    Idempotent; raises RuntimeError for an OpenOOD without v1.5's two functions.
    """
    import openood.networks.utils as net_utils
    import openood.pipelines  # noqa: F401  (imports every pipeline module, so all are rebound)
    import openood.preprocessors.utils as pre_utils

    _check_openood_version(net_utils, pre_utils)
    if not getattr(net_utils.get_network, _WRAPPED, False):
        original_network = net_utils.get_network

        def get_network(network_config):
            if network_config.name == NAME:
                return clip_net_from_config(network_config)
            return original_network(network_config)

        setattr(get_network, _WRAPPED, True)
        _rebind("get_network", get_network, ["openood.networks.utils", "openood.networks"])

    if not getattr(pre_utils.get_preprocessor, _WRAPPED, False):
        original_preprocessor = pre_utils.get_preprocessor

        def get_preprocessor(config, split):
            if (config.get("preprocessor") or {}).get("name") == NAME:
                return CLIPPreprocessor(config)
            return original_preprocessor(config, split)

        setattr(get_preprocessor, _WRAPPED, True)
        _rebind("get_preprocessor", get_preprocessor,
                ["openood.preprocessors.utils", "openood.preprocessors", "openood.datasets.utils"])
