"""Parameters of EOE (the only place their defaults live). Defaults = the authors' code
(tmlr-group/EOE ``eval_ood_detection.py`` arguments, ``eval.sh``, ``utils/generate_llm_class.py``),
except ``llm`` (no network by default: give a model or a names file)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import Params, ParamError, param
from openood_immuno.llm.http import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT_S
from .prompts import TASKS


@dataclass(frozen=True)
class EOEParams(Params):
    """EOE: LLM-envisioned outlier names; S = max softmax over ID - beta * max softmax over outliers."""

    task: str = param("far", "which prompt envisions the outliers (near: per class; far, "
                      "fine_grained: over the class list)", choices=TASKS)
    L: int = param(0, "names asked: far / fine_grained in all, near per class; 0 = the authors' "
                   "value (500; near 3)", low=0)
    class_type: str = param("", "fine_grained only: the kind of the ID classes (e.g. bird)")
    beta: float = param(0.25, "weight of the outlier penalty", low=0, sweep=(0.0, 0.1, 0.25, 0.5, 1.0))
    T: float = param(1.0, "softmax temperature on raw cosines", low=0, low_open=True,
                     sweep=(0.01, 0.1, 1.0))
    templates: Tuple[str, ...] = param(("a photo of a {}",), "prompts of ID and outlier names, averaged",
                                       placeholder="{}", nonempty=True)
    outlier_names_file: str = param("", "a file of envisioned names, one per line: no LLM asked")
    llm: str = param("none", "hf:NAME_OR_PATH | openai:MODEL@URL | openai:URL | none "
                     "(authors: gpt-3.5-turbo-16k)")
    llm_temperature: float = param(0.0, "sampling temperature (0 = greedy)", low=0)
    llm_max_new_tokens: int = param(1024, "tokens per answer (50 names)", low=1)
    llm_device: str = param("cpu", "torch device of an hf: model", nonempty=True)
    llm_api_key_env: str = param(DEFAULT_API_KEY_ENV, "environment variable holding the openai: API key")
    llm_timeout_s: float = param(DEFAULT_TIMEOUT_S, "timeout of one openai: request, seconds",
                                 low=0, low_open=True)
    llm_seed: int = param(0, "seed passed with every request", low=0)

    BANK = ("task", "L", "class_type", "templates", "outlier_names_file", "llm", "llm_temperature",
            "llm_max_new_tokens", "llm_device", "llm_api_key_env", "llm_timeout_s", "llm_seed")
    """The parameters the text banks depend on (the others only change the score)."""

    def check(self) -> None:
        if self.llm.strip().lower() != "none" and ":" not in self.llm:
            raise ParamError(f"llm must be hf:NAME_OR_PATH, openai:MODEL@URL, openai:URL or "
                             f"none, got {self.llm!r}")
        if self.task == "fine_grained" and not self.class_type.strip() and not self.outlier_names_file:
            raise ParamError("task fine_grained needs class_type (the kind of the ID classes, "
                             "e.g. bird) unless outlier_names_file is given")
