"""Registration of openood-immuno's postprocessors into a stock OpenOOD.

The name -> class table and the builders live in :mod:`openood_immuno.postprocessors.registry`
(no OpenOOD there); this module is what touches OpenOOD.

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
import sys
from typing import Any

from openood_immuno.core.ymlconfig import load_postprocessor_config
from openood_immuno.postprocessors.registry import (METHODS, build_postprocessor, postprocessor_class,
                                                    registrable_postprocessors, resolved_params,
                                                    with_shipped_defaults)
from .network import register_clip

_WRAPPED = "_openood_immuno_wrapped"
_PIPELINES = ("test_ood_pipeline", "test_ood_pipeline_aps", "test_ad_pipeline",
              "train_ad_pipeline", "train_opengan_pipeline")


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
            if postprocessor_name in names:
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
            ours = {m for m, cls in METHODS.items() if not cls.openood_builtin}   # msp, knn...: OpenOOD's own
            if (pp.get("method") or pp["name"]) in ours or pp["name"] in names:
                merged = with_shipped_defaults(config)
                return postprocessor_class(merged)(merged)
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

