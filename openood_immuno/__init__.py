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
from .clip_net import CLIPNet, build_clip_net
from .ymlconfig import available_postprocessors
from .registry import build_postprocessor, register

__version__ = "0.1.0"
__all__ = ["CLIPNet", "build_clip_net", "build_postprocessor", "register",
           "available_postprocessors", "__version__"]
