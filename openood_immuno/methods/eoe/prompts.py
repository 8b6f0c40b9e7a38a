"""EOE's LLM prompts (the authors' wording, shipped as data in ``prompts.txt``) and the requests
of one envisioning run.

Cao et al., "Envisioning Outlier Exposure by Large Language Models for Out-of-Distribution
Detection", ICML 2024 (code: tmlr-group/EOE, ``utils/prompt_pool.py``,
``utils/generate_llm_class.py``):

* ``far`` and ``fine_grained``: one prompt over the whole ID class list asking for 50 names,
  then ``max(L // 50 - 1, 0)`` follow-ups ("give me 50 more") in the same conversation;
* ``near``: one prompt per ID class (``_`` read as a space) asking for ``L`` names.

``{class_info}`` is the Python ``repr`` of the class list for ``far`` / ``fine_grained`` (the
authors pass the list into the f-string) and the class name for ``near``; ``{num_classes}`` is
the number of ID classes, ``{class_type}`` the kind of the fine-grained classes (``'bird'``).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Sequence

TASKS = ("far", "near", "fine_grained")
BATCH = 50            # names asked per far / fine-grained request (the authors' envision_nums)


@lru_cache(maxsize=1)
def prompt_texts() -> dict[str, str]:
    """``{section: template}`` of ``prompts.txt``."""
    text = resources.files(__package__).joinpath("prompts.txt").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines(keepends=True):
        if line.startswith("### "):
            name = line[4:].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line
    return out


def default_count(task: str) -> int:
    """The authors' ``L`` per task (``eval.sh``): 500 names for far / fine-grained, 3 per class for near."""
    return 3 if task == "near" else 500


def first_prompts(task: str, class_names: Sequence[str], class_type: str, count: int) -> list[str]:
    """The opening prompt(s): one for ``far`` / ``fine_grained``, one per class for ``near``."""
    if task not in TASKS:
        raise ValueError(f"unknown EOE task {task!r}: use one of {TASKS}")
    if task == "fine_grained" and not class_type.strip():
        raise ValueError("EOE task fine_grained needs class_type (the kind of the ID classes, "
                         "e.g. 'bird'): set eoe.class_type")
    t = prompt_texts()[task]
    n = len(class_names)
    if task == "near":
        return [t.format(num_classes=n, class_type=class_type, class_info=c.replace("_", " "),
                         envision_nums=count) for c in class_names]
    return [t.format(num_classes=n, class_type=class_type, class_info=list(class_names),
                     envision_nums=BATCH)]


def follow_up_prompt(task: str) -> str:
    """The "50 more" prompt of ``far`` / ``fine_grained``."""
    return prompt_texts()[f"{task}_again"].format(envision_nums=BATCH)


def follow_up_count(task: str, count: int) -> int:
    """Follow-ups after the opening prompt: ``max(L // 50 - 1, 0)``; none for ``near``."""
    return 0 if task == "near" else max(count // BATCH - 1, 0)
