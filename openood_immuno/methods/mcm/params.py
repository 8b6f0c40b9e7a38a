"""Parameters of MCM (the only place their defaults live)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import Params, param


@dataclass(frozen=True)
class MCMParams(Params):
    """MCM's parameters; the official setting is T = 1 on raw cosines, "a photo of a {}."."""

    ALIASES = {"tau": "T"}   # the key of OpenOOD's own configs/postprocessors/mcm.yml

    T: float = param(1.0, "softmax temperature on raw cosines (official: 1)", low=0, low_open=True,
                     sweep=(0.01, 0.1, 0.5, 1.0, 2.0), means=("temperature", "temp", "softmax_temperature"))
    templates: Tuple[str, ...] = param(("a photo of a {}.",), "ID prompts, averaged per class",
                                       placeholder="{}", nonempty=True,
                                       means=("prompts", "prompt", "template"))
