"""Name -> postprocessor lookup, and registration into a stock OpenOOD.

OpenOOD v1.5 has no plugin mechanism. :func:`register` therefore

* adds our names to ``openood.evaluation_api.postprocessor.postprocessors`` (the module-level
  name -> class dict) and wraps the ``get_postprocessor(config_root, name, id_name)`` that the
  ``Evaluator`` calls, so our names load our yml from this package (never downloaded, whatever
  ``config_root`` is);
* wraps ``openood.postprocessors.utils.get_postprocessor(config)`` and rebinds it in every
  module that imported it by name (the ``main.py`` pipelines), so configs naming our
  postprocessors work through OpenOOD's own scripts.

Calling it twice changes nothing the second time.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any, Mapping

from openood_immuno.core.ymlconfig import Config, available_postprocessors, load_postprocessor_config, merge_postprocessor
from openood_immuno.core.params import Params
from .network import register_clip
from openood_immuno.postprocessors.base import ImmunoPostprocessor

_WRAPPED = "_openood_immuno_wrapped"
_PIPELINES = ("test_ood_pipeline", "test_ood_pipeline_aps", "test_ad_pipeline",
              "train_ad_pipeline", "train_opengan_pipeline")


def _methods() -> tuple[dict[str, type[ImmunoPostprocessor]], dict[str, str]]:
    """``(method -> class, module -> import error)`` over ``openood_immuno.postprocessors``.

    A module that fails to import (a missing optional dependency) disables only its own
    methods; the error is reported when one of them is asked for.
    """
    package = importlib.import_module("openood_immuno.postprocessors")
    found: dict[str, type[ImmunoPostprocessor]] = {}
    failed: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, ImmunoPostprocessor) and obj.method
                    and obj.__module__ == module.__name__):
                found[obj.method] = obj
    return found, failed


def postprocessor_class(config: Any) -> type[ImmunoPostprocessor]:
    """The class of a config (``postprocessor.method``, defaulting to ``postprocessor.name``)."""
    pp = config["postprocessor"]
    method = pp.get("method") or pp["name"]
    methods, failed = _methods()
    if method not in methods:
        hint = f"; modules that failed to import: {failed}" if failed else ""
        raise KeyError(f"no postprocessor class implements method {method!r}: known {sorted(methods)}{hint}")
    return methods[method]


def registrable_postprocessors() -> list[str]:
    """The shipped names :func:`register` puts into OpenOOD: every shipped name except OpenOOD's
    own (``openood_builtin`` classes: msp, ebo, knn, ...), which stay OpenOOD's implementations
    there (``Evaluator(net, postprocessor_name='msp')`` runs OpenOOD's msp on the CLIP net)."""
    return [name for name in available_postprocessors()
            if not postprocessor_class(load_postprocessor_config(name)).openood_builtin]


def _config_with(name: str, id_name: str, overrides: Mapping[str, Any]) -> Config:
    """The shipped config of ``name`` with ``overrides`` over its ``postprocessor_args``."""
    config = load_postprocessor_config(name, id_name)
    canonical = postprocessor_class(config).params_class.canonical
    config.postprocessor.postprocessor_args = {
        **canonical(config.postprocessor.get("postprocessor_args") or {}), **canonical(overrides)}
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


def openood_available() -> bool:
    try:
        import openood.evaluation_api.postprocessor  # noqa: F401
    except ImportError:
        return False
    return True


_BY_NAME_OVERRIDES: dict[str, dict[str, Any]] = {}


def register(overrides: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Make every openood-immuno postprocessor selectable in stock OpenOOD; returns the names.

    ``overrides`` (``{name: {arg: value}}``) replace yml arguments for OpenOOD's by-name
    lookups, e.g. ``register({"ants": {"mllm": "hf:/models/llava-1.5-7b"}})``; they replace
    those of an earlier call. Raises ImportError with install instructions when OpenOOD is absent.
    """
    try:
        import openood.evaluation_api.evaluator as ev_mod
        import openood.evaluation_api.postprocessor as api
        import openood.postprocessors as pp_pkg
        import openood.postprocessors.utils as pp_utils
    except ImportError as exc:
        raise ImportError("openood_immuno.register() needs OpenOOD, which is not on PyPI: install it "
                          "with `pip install git+https://github.com/Jingkang50/OpenOOD` "
                          f"({exc})") from exc
    _check_openood_version(api, pp_utils)
    names = registrable_postprocessors()
    unknown = sorted(set(overrides or {}) - set(names))
    if unknown:
        raise KeyError(f"overrides for unknown postprocessor(s) {unknown}: available {names}")
    for name, values in (overrides or {}).items():   # bad names or values fail here, not at Evaluator time
        resolved_params(name, values)
    _BY_NAME_OVERRIDES.clear()
    _BY_NAME_OVERRIDES.update({k: dict(v) for k, v in (overrides or {}).items()})
    from openood_immuno.postprocessors.base import OPENOOD_BASE

    if OPENOOD_BASE is None:
        raise ImportError("OpenOOD became importable after openood_immuno was imported: import "
                          "openood before openood_immuno so postprocessors subclass its base")
    for name in names:
        api.postprocessors[name] = postprocessor_class(load_postprocessor_config(name))

    if not getattr(api.get_postprocessor, _WRAPPED, False):
        original_api = api.get_postprocessor

        def get_postprocessor(config_root, postprocessor_name, id_data_name):
            if postprocessor_name in registrable_postprocessors():
                return build_postprocessor(postprocessor_name, id_data_name,
                                           **_BY_NAME_OVERRIDES.get(postprocessor_name, {}))
            return original_api(config_root, postprocessor_name, id_data_name)

        setattr(get_postprocessor, _WRAPPED, True)
        api.get_postprocessor = get_postprocessor
        ev_mod.get_postprocessor = get_postprocessor

    if not getattr(pp_utils.get_postprocessor, _WRAPPED, False):
        original_utils = pp_utils.get_postprocessor

        def get_postprocessor_from_config(config):
            pp = config["postprocessor"]
            ours = {m for m, cls in _methods()[0].items() if not cls.openood_builtin}
            if (pp.get("method") or pp["name"]) in ours or pp["name"] in names:
                merged = _with_shipped_defaults(config)
                obj = postprocessor_class(merged)(merged)
                return obj
            return original_utils(config)

        setattr(get_postprocessor_from_config, _WRAPPED, True)
        for mod_name in ["openood.postprocessors.utils", "openood.postprocessors"] + [
                f"openood.pipelines.{p}" for p in _PIPELINES]:
            try:
                module = importlib.import_module(mod_name)
            except Exception:  # a pipeline whose own imports fail cannot be used anyway
                module = sys.modules.get(mod_name)
            if module is not None and hasattr(module, "get_postprocessor"):
                module.get_postprocessor = get_postprocessor_from_config
        pp_pkg.get_postprocessor = get_postprocessor_from_config
    register_clip()
    return names


def _check_openood_version(api, pp_utils) -> None:
    """The v1.5 name tables we hook into must exist; older or reorganised OpenOODs fail clearly."""
    import inspect

    problems = []
    if not isinstance(getattr(api, "postprocessors", None), dict):
        problems.append("openood.evaluation_api.postprocessor.postprocessors (name -> class dict)")
    get = getattr(api, "get_postprocessor", None)
    if get is None or list(inspect.signature(get).parameters)[:2] != ["config_root", "postprocessor_name"]:
        problems.append("get_postprocessor(config_root, postprocessor_name, id_data_name)")
    if not callable(getattr(pp_utils, "get_postprocessor", None)):
        problems.append("openood.postprocessors.utils.get_postprocessor(config)")
    if problems:
        raise RuntimeError("incompatible OpenOOD version: openood-immuno needs OpenOOD v1.5, which has "
                           + "; ".join(problems) + ". Install OpenOOD v1.5 from its git repository")


def _with_shipped_defaults(config) -> Config:
    """A user config for one of our names over the shipped yml (``base:`` rule of
    :mod:`.ymlconfig`: the user's keys, args and sweep entries win)."""
    pp = config["postprocessor"]
    shipped = (load_postprocessor_config(pp["name"]).postprocessor
               if pp["name"] in available_postprocessors() else Config())
    merged = Config(dict(config))
    merged.postprocessor = {**shipped, **pp}
    params_class = postprocessor_class(merged).params_class

    def canonical(section):   # aliases resolved on both sides, so that a user's `tau` replaces `T`
        return {**section,
                "postprocessor_args": params_class.canonical(section.get("postprocessor_args") or {}),
                "postprocessor_sweep": params_class.canonical(section.get("postprocessor_sweep") or {},
                                                              "_list")}

    merged.postprocessor = merge_postprocessor(canonical(shipped), canonical(pp))
    return merged
