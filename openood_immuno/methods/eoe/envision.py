"""Asking a chat model for outlier class names (EOE's envisioning step) and caching the answer.

The requests are those of :mod:`.prompts`; the answers are parsed and cleaned by :mod:`.names`.
The authors keep a conversation for the far / fine-grained follow-ups; the project's chat
backends take one prompt, so a follow-up is sent as the conversation so far in one text
(opening prompt, each answer, each follow-up, separated by a blank line).

A failed request (:class:`~openood_immuno.llm.errors.RequestFailed`) is counted and skipped; a
backend given up (:class:`~openood_immuno.llm.errors.BackendUnavailable`) ends the run with the
names gathered so far. Only a run without failures is cached (``cache_dir('eoe')``), keyed by
the model, its settings, the task, the ID classes and the prompts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

from openood_immuno.core.cache import cache_dir, content_key
from openood_immuno.llm.errors import BackendUnavailable, RequestFailed
from .names import parse_answer, read_names, write_names
from .prompts import first_prompts, follow_up_count, follow_up_prompt, prompt_texts

log = logging.getLogger(__name__)


@dataclass
class Envisioned:
    """Raw names of one envisioning run and how the requests went."""

    names: list[str] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    gave_up: Optional[str] = None

    @property
    def problem(self) -> Optional[str]:
        """``None`` when every request was answered, else what went wrong."""
        if self.gave_up:
            return f"LLM given up after {self.requests} requests ({self.gave_up})"
        if self.failed:
            return f"{self.failed} of {self.requests} LLM requests failed"
        return None


def _ask(backend, prompt: str, seed: int, out: Envisioned) -> Optional[str]:
    out.requests += 1
    try:
        return backend.complete(prompt, seed)
    except RequestFailed as exc:
        out.failed += 1
        log.warning("EOE: LLM request failed (%s)", exc)
        return None


def envision(backend, task: str, class_names: Sequence[str], class_type: str, count: int,
             seed: int = 0) -> Envisioned:
    """All requests of one run (see the module docstring)."""
    out = Envisioned()
    try:
        for prompt in first_prompts(task, class_names, class_type, count):
            answer = _ask(backend, prompt, seed, out)
            if answer is None:
                continue
            out.names += parse_answer(answer)
            transcript = prompt + answer
            for _ in range(follow_up_count(task, count)):
                transcript += "\n\n" + follow_up_prompt(task)
                answer = _ask(backend, transcript, seed, out)
                if answer is None:
                    break
                out.names += parse_answer(answer)
                transcript += answer
    except BackendUnavailable as exc:
        out.failed += 1
        out.gave_up = str(exc)
        log.error("EOE: %s", exc)
    return out


def cache_key(model: str, settings: dict, task: str, class_names: Sequence[str], class_type: str,
              count: int) -> str:
    return content_key("eoe-v1", model, settings, task, list(class_names), class_type, count,
                       prompt_texts())


def cached_names(key: str) -> Optional[list[str]]:
    path = cache_dir("eoe") / f"{key}.txt"
    if not path.is_file():
        return None
    try:
        return read_names(path)
    except ValueError:
        path.unlink(missing_ok=True)
        return None


def store_names(key: str, names: Sequence[str], meta: dict) -> None:
    write_names(names, cache_dir("eoe") / f"{key}.txt", meta)
