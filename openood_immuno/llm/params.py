"""The ``llm_*`` parameters of a method that asks a text LLM (EOE's envisioned names, NegRefine's
filter), with the chat backend and the answer-cache settings they define."""
from __future__ import annotations

from dataclasses import dataclass

from openood_immuno.core.params import ParamError, Params, param
from .http import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT_S
from .spec import parse_spec


@dataclass(frozen=True)
class ChatLLMParams(Params):
    """Base of a method's params that name a text LLM (:mod:`.spec`'s grammar). ``llm`` defaults to
    ``none`` (no network); a method overrides the field to name its authors' model in the help,
    and ``llm_max_new_tokens`` where its answers are longer."""

    llm: str = param("none", "hf:NAME_OR_PATH | openai:MODEL@URL | openai:URL | none")
    llm_temperature: float = param(0.0, "sampling temperature (0 = greedy)", low=0)
    llm_max_new_tokens: int = param(512, "tokens per answer", low=1)
    llm_device: str = param("cpu", "torch device of an hf: model", nonempty=True)
    llm_api_key_env: str = param(DEFAULT_API_KEY_ENV, "environment variable holding the openai: API key")
    llm_timeout_s: float = param(DEFAULT_TIMEOUT_S, "timeout of one openai: request, seconds",
                                 low=0, low_open=True)
    llm_seed: int = param(0, "seed passed with every request", low=0)

    LLM_FIELDS = ("llm", "llm_temperature", "llm_max_new_tokens", "llm_device", "llm_api_key_env",
                  "llm_timeout_s", "llm_seed")
    """What the LLM's answers depend on (part of a method's ``BANK``)."""

    def check(self) -> None:
        if self.llm.strip().lower() != "none" and ":" not in self.llm:
            raise ParamError(f"llm must be hf:NAME_OR_PATH, openai:MODEL@URL, openai:URL or "
                             f"none, got {self.llm!r}")

    def llm_settings(self) -> dict:
        """The sampling settings an answer cache is keyed by (with the model and the questions)."""
        return {"temperature": self.llm_temperature, "max_new_tokens": self.llm_max_new_tokens,
                "seed": self.llm_seed}

    def chat_backend(self, option: str):
        """The chat backend of ``llm`` (loaded or checked now); ``option`` names it in errors."""
        from .chat import build_chat_backend

        return build_chat_backend(parse_spec(self.llm, option), device=self.llm_device,
                                  api_key_env=self.llm_api_key_env, timeout_s=self.llm_timeout_s,
                                  temperature=self.llm_temperature, max_new_tokens=self.llm_max_new_tokens)
