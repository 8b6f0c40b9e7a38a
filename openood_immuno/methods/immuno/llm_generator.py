"""Antibodies from a language model (a :class:`~openood_immuno.llm.chat.ChatBackend`).

Two prompts per class (:data:`NEAR_PROMPT`, hard semantic negatives; :data:`CONTEXT_PROMPT`,
contextual anomalies; the wording is ours: the paper does not print its prompts). Each
answer is parsed (:func:`openood_immuno.llm.parsing.parse_list`) and screened
(:func:`~.screening.screen_candidates`); while a kind has fewer usable items than asked, the
prompt is retried (``retries`` times, a new seed each time). Garbage answers and transient
failures (HTTP 5xx/429, timeouts, a model error, an answer with no text: a failed request,
counted in the backend's ``failures`` and ``unusable``) are reported per class and never stop a
run; a backend that cannot work at all (model not found, endpoint down at start, HTTP
401/403/404) or whose failure budget is spent (:mod:`openood_immuno.llm.cost`: 5 requests in
a row or 300 s of requests without an answer) raises :class:`~.generation.GeneratorUnavailable`
with the fix.
"""
from __future__ import annotations

import time

from openood_immuno.core.cache import content_key
from openood_immuno.llm.chat import ChatBackend
from openood_immuno.llm.errors import BackendUnavailable, RequestFailed
from openood_immuno.llm.parsing import parse_list
from .antibodies import Antibody, normalise_text
from .generation import AntibodyGenerator, ClassInfo, Generated, GeneratorUnavailable
from .screening import screen_candidates

LLM_GENERATOR_VERSION = 1
NEAR_PROMPT = ("List {n} things that look visually similar to a {c} in a photo but are not a {c}: "
               "other objects, animals, plants or scenes that an image classifier could confuse "
               "with a {c}. Answer with a numbered list of short names only (1 to 4 words each), "
               "one per line, without explanations.")
CONTEXT_PROMPT = ("List {n} short descriptions of a {c} in an impossible, surreal or anomalous form "
                  "or setting that never occurs in ordinary photos, for example \"a {c} made of "
                  "clouds\" or \"a melting {c}\". Answer with a numbered list, one description per "
                  "line; every item must mention \"{c}\".")


class LLMGenerator(AntibodyGenerator):
    """Antibodies from a :class:`ChatBackend` with the two Immuno-VLM prompts."""

    def __init__(self, backend: ChatBackend, n_near: int = 10, n_contextual: int = 5,
                 retries: int = 2, seed: int = 0, retry_wait: float = 1.0,
                 near_prompt: str = NEAR_PROMPT, context_prompt: str = CONTEXT_PROMPT):
        super().__init__(n_near, n_contextual, seed)
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.backend, self.retries, self.retry_wait = backend, int(retries), float(retry_wait)
        self.prompts = {"near_ood": near_prompt, "contextual": context_prompt}
        self.name = f"{backend.kind}:{backend.model_id}"

    def provenance(self) -> dict:
        return {"generator": f"llm-{self.backend.kind}", "model": self.backend.model_id,
                "prompts": dict(self.prompts), "seed": self.seed,
                "params": {"n_near": self.n_near, "n_contextual": self.n_contextual,
                           "retries": self.retries, **self.backend.params()},
                "generator_version": LLM_GENERATOR_VERSION}

    def _ask(self, prompt: str, seed: int) -> str:
        try:
            return self.backend.complete(prompt, seed)
        except BackendUnavailable as exc:
            raise GeneratorUnavailable(f"{exc} (requests: {self.backend.cost.failure_note()})") from exc

    def generate(self, cls: ClassInfo) -> Generated:
        out = Generated(answered=False)
        for kind, wanted in (("near_ood", self.n_near), ("contextual", self.n_contextual)):
            got: dict[str, str] = {}
            for attempt in range(self.retries + 1):
                if len(got) >= wanted:
                    break
                prompt = self.prompts[kind].format(c=cls.name, n=wanted)
                seed = int(content_key("llm-seed", self.seed, cls.name, kind, attempt)[:8], 16)
                try:
                    answer = self._ask(prompt, seed)
                except RequestFailed as exc:
                    out.problems.append(f"{kind} try {attempt + 1}: {exc}")
                    if attempt < self.retries:
                        time.sleep(self.retry_wait * (attempt + 1))
                    continue
                out.answered = True
                items = parse_list(answer)
                kept, rejected = screen_candidates(items, cls.name, kind)
                for text in kept:
                    got.setdefault(normalise_text(text), text)
                if len(kept) < len(items) or not items:
                    out.problems.append(f"{kind} try {attempt + 1}: {len(kept)} usable of {len(items)} "
                                        f"items (rejected {rejected[:2]}; answer {answer[:60]!r})")
            out.antibodies += [Antibody(text, kind, self.name) for text in list(got.values())[:wanted]]
        return out
