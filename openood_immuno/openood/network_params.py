"""The fields of OpenOOD's ``network.name: clip`` config and their defaults (the only place they live).

``configs/networks/clip.yml`` states only the wiring (``name: clip`` and the ``class_names`` /
``num_classes`` references to the dataset); every other field takes its default from
:class:`CLIPNetworkParams`. Run configs built by :mod:`openood_immuno.openood.configs` write
every field out, so OpenOOD's ``--network.KEY VALUE`` overrides (which need the key to exist)
find them; the launcher adds the missing ones to a stacked config before applying overrides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Tuple

from openood_immuno.core.params import Params, param
from openood_immuno.data.benchmarks import MCM_PROMPT

NAME = "clip"


@dataclass(frozen=True)
class CLIPNetworkParams(Params):
    """``network`` fields of ``network.name: clip`` besides the wiring of ``configs/networks/clip.yml``."""

    model: str = param("ViT-B-16", "open_clip model name or local JSON config", nonempty=True)
    pretrained: str = param("openai", "open_clip tag, checkpoint path, or none (random weights: smoke "
                            "tests only; it warns)", nonempty=True)
    templates: Tuple[str, ...] = param(MCM_PROMPT, "prompts of the ID classifier (MCM's)",
                                       placeholder="{}", nonempty=True)
    device: str = param("auto", "auto (cuda when available, else cpu) or a torch device; never moved "
                        "by num_gpus", nonempty=True)
    seed: int = param(0, "seed of the random initialisation (pretrained: none)", low=0)

    @classmethod
    def of(cls, network_config: Mapping[str, Any]) -> "CLIPNetworkParams":
        """The fields of a ``network`` config (absent or null ones take their defaults; keys
        that are not fields, such as the wiring or OpenOOD's own, are left alone)."""
        values = {k: network_config.get(k) for k in cls.names() if network_config.get(k) is not None}
        return cls.from_mapping(values, where="network config", prefix="network.")
