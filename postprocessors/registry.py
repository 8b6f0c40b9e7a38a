"""Method -> postprocessor class, and postprocessors built from the shipped yml configs.

Every postprocessor module is imported here by name (:data:`METHODS`), so the import graph
shows each arrow; a new method adds one import and one row. Parameter names, aliases and
values are the business of each class's params dataclass
(:class:`~openood_immuno.core.params.Params`): this module only merges mappings through it.
Nothing here touches OpenOOD (registering into it is :mod:`openood_immuno.openood.registry`).
"""
from __future__ import annotations

from typing import Any, Mapping

from openood_immuno.core.params import Params
from openood_immuno.core.ymlconfig import (Config, available_postprocessors, load_postprocessor_config,
                                           merge_postprocessor)

from .adaneg_postprocessor import AdaNegPostprocessor
from .ants_postprocessor import ANTSPostprocessor
from .base import ImmunoPostprocessor
from .classic_postprocessor import (ASHPostprocessor, DICEPostprocessor, EBOPostprocessor, FDBDPostprocessor,
                                    GENPostprocessor, GradNormPostprocessor, KLMPostprocessor, KNNPostprocessor,
                                    MDSPostprocessor, MLSPostprocessor, MSPPostprocessor, NCIPostprocessor,
                                    ReActPostprocessor, RMDSPostprocessor, SCALEPostprocessor, SHEPostprocessor,
                                    VIMPostprocessor)
from .csp_postprocessor import CSPPostprocessor
from .eoe_postprocessor import EOEPostprocessor
from .glmcm_postprocessor import GLMCMPostprocessor
from .immuno_postprocessor import ImmunoDISPostprocessor, ImmunoVLMPostprocessor, ImmunoZeroShotPostprocessor
from .mcm_postprocessor import MCMPostprocessor
from .neglabel_postprocessor import NegLabelPostprocessor
from .negrefine_postprocessor import NegRefinePostprocessor

#: ``postprocessor.method`` of a yml -> the class that implements it
METHODS: dict[str, type[ImmunoPostprocessor]] = {cls.method: cls for cls in (
    MCMPostprocessor, NegLabelPostprocessor, ANTSPostprocessor, ImmunoVLMPostprocessor,
    ImmunoDISPostprocessor, ImmunoZeroShotPostprocessor, CSPPostprocessor, EOEPostprocessor,
    AdaNegPostprocessor, GLMCMPostprocessor, NegRefinePostprocessor,
    # OpenOOD's classic postprocessors on the CLIP net (openood_builtin: OpenOOD keeps its own by name)
    MSPPostprocessor, EBOPostprocessor, MLSPostprocessor, GENPostprocessor, GradNormPostprocessor,
    ReActPostprocessor, ASHPostprocessor, SCALEPostprocessor, DICEPostprocessor, KNNPostprocessor,
    VIMPostprocessor, MDSPostprocessor, RMDSPostprocessor, KLMPostprocessor, SHEPostprocessor,
    FDBDPostprocessor, NCIPostprocessor)}


def registrable_postprocessors() -> list[str]:
    """The shipped names :func:`openood_immuno.register` puts into OpenOOD: every shipped name
    except OpenOOD's own (``openood_builtin`` classes: msp, ebo, knn, ...), which stay OpenOOD's
    implementations there (``Evaluator(net, postprocessor_name='msp')`` runs OpenOOD's msp on the
    CLIP net; ``build_postprocessor('msp')`` and ``eval --postprocessors msp`` give ours, with
    equal scores)."""
    return [name for name in available_postprocessors()
            if not postprocessor_class(load_postprocessor_config(name)).openood_builtin]


def postprocessor_class(config: Any) -> type[ImmunoPostprocessor]:
    """The class of a config (``postprocessor.method``, defaulting to ``postprocessor.name``)."""
    pp = config["postprocessor"]
    method = pp.get("method") or pp["name"]
    if method not in METHODS:
        raise KeyError(f"no postprocessor class implements method {method!r}: known {sorted(METHODS)}")
    return METHODS[method]


def _config_with(name: str, id_name: str, overrides: Mapping[str, Any]) -> Config:
    """The shipped config of ``name`` with ``overrides`` over its ``postprocessor_args`` (aliases
    resolved on both sides by the params class, so an override ``tau`` replaces a shipped ``T``)."""
    config = load_postprocessor_config(name, id_name)
    params_class = postprocessor_class(config).params_class
    where = f"postprocessor '{name}'"
    config.postprocessor.postprocessor_args = {
        **params_class.canonical(config.postprocessor.get("postprocessor_args") or {}, where),
        **params_class.canonical(overrides, f"{where} overrides")}
    return config


def resolved_params(name: str, overrides: Mapping[str, Any] | None = None) -> tuple[Params, dict[str, list]]:
    """``(params, sweep)`` of shipped ``name`` with ``overrides``, validated, without building
    anything (to check command-line values before a model is built)."""
    config = _config_with(name, "imagenet", overrides or {})
    pp = config.postprocessor
    return postprocessor_class(config).params_class.from_config(
        pp.get("postprocessor_args"), pp.get("postprocessor_sweep"), where=f"postprocessor '{name}'",
        prefix=f"{name}.")


def build_postprocessor(name: str, id_name: str = "imagenet", APS_mode: bool | None = None,
                        **overrides: Any) -> ImmunoPostprocessor:
    """A postprocessor ready for ``Evaluator(postprocessor=obj)`` or our runner.

    ``overrides`` replace ``postprocessor_args`` of the shipped yml (unknown names and invalid
    values raise, naming the key and the fix).
    """
    config = _config_with(name, id_name, overrides)
    if APS_mode is not None:
        config.postprocessor.APS_mode = APS_mode
    return postprocessor_class(config)(config)


def with_shipped_defaults(config) -> Config:
    """A user config for one of our names over the shipped yml (``base:`` rule of
    :mod:`openood_immuno.core.ymlconfig`: the user's keys, args and sweep entries win)."""
    pp = config["postprocessor"]
    shipped = (load_postprocessor_config(pp["name"]).postprocessor
               if pp["name"] in available_postprocessors() else Config())
    merged = Config(dict(config))
    merged.postprocessor = {**shipped, **pp}
    params_class = postprocessor_class(merged).params_class

    def canonical(section, where):   # aliases resolved on both sides, so that a user's `tau` replaces `T`
        return {**section,
                "postprocessor_args": params_class.canonical(section.get("postprocessor_args") or {}, where),
                "postprocessor_sweep": params_class.canonical(section.get("postprocessor_sweep") or {},
                                                              where, "_list")}

    merged.postprocessor = merge_postprocessor(canonical(shipped, f"shipped postprocessor '{pp['name']}'"),
                                               canonical(pp, f"postprocessor '{pp['name']}'"))
    return merged
