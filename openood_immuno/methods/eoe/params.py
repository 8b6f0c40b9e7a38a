"""Parameters of EOE (the only place their defaults live). Defaults = the authors' code
(tmlr-group/EOE ``eval_ood_detection.py`` arguments, ``eval.sh``, ``utils/generate_llm_class.py``),
except ``llm`` (no network by default: give a model or a names file)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import ParamError, param
from openood_immuno.llm.params import ChatLLMParams
from .prompts import TASKS


@dataclass(frozen=True)
class EOEParams(ChatLLMParams):
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
    llm_max_new_tokens: int = param(1024, "tokens per answer (50 names)", low=1)

    BANK = ("task", "L", "class_type", "templates", "outlier_names_file", *ChatLLMParams.LLM_FIELDS)
    """The parameters the text banks depend on (the others only change the score)."""

    def check(self) -> None:
        super().check()
        if self.task == "fine_grained" and not self.class_type.strip() and not self.outlier_names_file:
            raise ParamError("task fine_grained needs class_type (the kind of the ID classes, "
                             "e.g. bird) unless outlier_names_file is given")
