"""The antibody generator interface (Immuno-VLM, Phase 2): what every generator implements.

A generator turns one ID class (:class:`ClassInfo`) into antibodies (:class:`Generated`);
:class:`GeneratorUnavailable` means it cannot run at all. The generators
(:mod:`.wordnet_gen`, :mod:`.llm_generator`) import this module; the factory and the
bank-building driver (:mod:`.generators`) import them, so there is no cycle.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .antibodies import Antibody


class GeneratorUnavailable(RuntimeError):
    """The generator cannot run at all (corpus, model or endpoint missing); the message says why."""


@dataclass(frozen=True)
class ClassInfo:
    """An ID class: its name and, when known, its WordNet id (``n01440764``)."""

    name: str
    wnid: Optional[str] = None


@dataclass
class Generated:
    """A generator's answer for one class.

    ``problems`` are human-readable log lines (garbage answers, retries); ``answered`` is
    False when the backend produced no answer at all (transport failure), which the driver
    counts towards stopping a run whose model or endpoint has gone away.
    """

    antibodies: list[Antibody] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    answered: bool = True


class AntibodyGenerator(ABC):
    """Interface of every generator: ``provenance``, ``wanted``, ``prepare``, ``generate``."""

    name: str = ""

    def __init__(self, n_near: int, n_contextual: int, seed: int = 0):
        if n_near < 0 or n_contextual < 0 or n_near + n_contextual == 0:
            raise ValueError(f"ask for at least one antibody per class (n_near={n_near}, "
                             f"n_contextual={n_contextual})")
        self.n_near, self.n_contextual, self.seed = int(n_near), int(n_contextual), int(seed)

    @property
    def wanted(self) -> dict[str, int]:
        return {"near_ood": self.n_near, "contextual": self.n_contextual}

    @abstractmethod
    def provenance(self) -> dict:
        """``generator``, ``model``, ``prompts``, ``seed``, ``params``, ``generator_version``."""

    def prepare(self, classes: Sequence[ClassInfo]) -> None:
        """Called once with *all* ID classes before generation (e.g. exclusion lists)."""

    @abstractmethod
    def generate(self, cls: ClassInfo) -> Generated:
        """Antibodies of one class; never raises for a bad answer (reports it in ``problems``)."""
