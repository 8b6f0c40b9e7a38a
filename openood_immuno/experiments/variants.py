"""The variants of the falsification test (:mod:`openood_immuno.experiments.falsification`),
torch-free so that the CLI's parser offers them without loading torch.

* ``immuno``: the full method (vaccinated adapter, DIS, EVT);
* ``immuno_no_antibodies``: the same adapter trained by the pull term only and scored without
  ``S_nonself`` (``beta = 0``, ``lambda = 0``): the antibodies' whole contribution removed;
* ``immuno_zeroshot``: adapter off (frozen CLIP, text prototypes), antibodies in DIS;
* ``mcm``: plain MCM, neither antibodies nor adapter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Variant:
    """One row of the test: a shipped postprocessor with parameter overrides."""

    label: str
    postprocessor: str
    overrides: Mapping[str, Any]
    description: str


REFERENCE = "immuno"
NO_ANTIBODIES = "immuno_no_antibodies"
DEFAULT_VARIANTS = (
    Variant(REFERENCE, "immuno", {}, "full method: adapter trained by pull + beta * push, DIS, EVT"),
    Variant(NO_ANTIBODIES, "immuno", {"beta": 0.0, "lambda": 0.0},
            "no antibodies: adapter trained by the pull term only (beta = 0), DIS without "
            "S_nonself (lambda = 0), EVT"),
    Variant("immuno_zeroshot", "immuno_zeroshot", {},
            "adapter off: frozen CLIP, text prototypes, antibodies in DIS"),
    Variant("mcm", "mcm", {}, "plain MCM: no antibodies, no adapter"),
)
VARIANTS = tuple(v.label for v in DEFAULT_VARIANTS)
"""The labels of :data:`DEFAULT_VARIANTS`, in order (``falsify --variants``)."""
EVERY = "*"
"""The name that stands for every variant having the key (``falsify --pp-arg '*.KEY=VALUE'``)."""
