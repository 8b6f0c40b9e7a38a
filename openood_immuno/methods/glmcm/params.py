"""Parameters of GL-MCM (the only place their defaults live)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import Params, param


@dataclass(frozen=True)
class GLMCMParams(Params):
    """GL-MCM's parameters; defaults = the authors' ImageNet run (AtsuMiyai/GL-MCM at commit
    8708a08: ``scripts/eval_imagenet.sh``: ``--lambda_local 0.5``, ``--T`` 1; prompt
    ``f"a photo of a {c}"`` in ``utils/detection_util.py``)."""

    ALIASES = {"lambda": "lambda_local", "tau": "T"}

    T: float = param(1.0, "softmax temperature on raw cosines, global and local (authors: 1)", low=0,
                     low_open=True, sweep=(0.5, 1.0, 2.0), means=("temperature", "temp"))
    lambda_local: float = param(0.5, "weight of the local score S_L (authors: 0.5 on ImageNet, 1.0 on COCO/VOC)",
                                low=0, sweep=(0.25, 0.5, 1.0, 2.0), means=("local_weight", "weight"))
    templates: Tuple[str, ...] = param(("a photo of a {}",), "ID prompts, averaged per class (authors: "
                                       "'a photo of a {}', no full stop)", placeholder="{}", nonempty=True,
                                       means=("prompts", "prompt", "template"))
