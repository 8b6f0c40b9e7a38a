"""ImageNet-1K class names (CLIP's cleaned names) with their WordNet ids, shipped as package data."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

_DATA = Path(__file__).with_name("data") / "imagenet_classes.json"
ID_DATASETS = ("imagenet",)


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """``((wnid, name), ...)`` for the 1000 ImageNet-1K classes in label order."""
    rows = json.loads(_DATA.read_text(encoding="utf-8"))["classes"]
    return tuple((r["wnid"], r["name"]) for r in rows)


def resolve_class_names(class_names: str | Sequence[str]) -> list[str]:
    """``'imagenet'`` -> CLIP's 1000 cleaned names; a sequence is returned as a list."""
    if isinstance(class_names, str):
        if class_names != "imagenet":
            raise ValueError(f"unknown ID dataset {class_names!r}: use one of {ID_DATASETS} "
                             "or pass the class names as a list")
        return [name for _, name in imagenet_classes()]
    names = list(class_names)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError("class_names must be a non-empty list of non-empty strings")
    return names
