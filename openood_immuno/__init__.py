"""openood-immuno: vision-language OOD scorers (MCM, NegLabel, ANTS, Immuno-VLM) for OpenOOD.

Quick start::

    import openood_immuno
    from openood.evaluation_api import Evaluator

    openood_immuno.register()
    net = openood_immuno.build_clip_net("ViT-B-16", "openai", "imagenet", device="cuda")
    ev = Evaluator(net, id_name="imagenet", data_root="./data", preprocessor=net.preprocess,
                   postprocessor_name="mcm")
    ev.eval_ood()
"""
from importlib import import_module

__version__ = "0.1.0"
# public name -> module: imported on first use, so `import openood_immuno.cli` (and so
# `openood-immuno --help`) loads no torch
_EXPORTS = {"CLIPNet": ".models.clip_net", "build_clip_net": ".models.clip_net",
            "build_postprocessor": ".postprocessors.registry",
            "register": ".openood.registry", "available_postprocessors": ".core.ymlconfig"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'openood_immuno' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
