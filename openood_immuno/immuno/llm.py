"""Antibodies from a language model: a local transformers model or an OpenAI-compatible endpoint.

Two prompts per class (:data:`NEAR_PROMPT`, hard semantic negatives; :data:`CONTEXT_PROMPT`,
contextual anomalies; the wording is ours: the paper does not print its prompts). Each
answer is parsed (:func:`~.parsing.parse_list`) and screened
(:func:`~.parsing.screen_candidates`); while a kind has fewer usable items than asked, the
prompt is retried (``retries`` times, a new seed each time). Garbage answers and transient
failures (HTTP 5xx/429, timeouts, a model error) are reported per class and never stop a
run; a backend that cannot work at all (model not found, endpoint down at start, HTTP
401/403/404) raises :class:`~.generators.GeneratorUnavailable` with the fix.

Backends:

* :class:`TransformersChatBackend` -- any causal LM by Hub name or local path; the chat
  template is used when the tokenizer has one, the raw prompt otherwise.
* :class:`OpenAIChatBackend` -- ``POST {url}/chat/completions`` (vLLM, Ollama, llama.cpp,
  hosted APIs) with stdlib ``urllib``; the model defaults to the first of ``GET {url}/models``;
  the key is read from ``api_key`` or ``$OPENAI_API_KEY``.
"""
from __future__ import annotations

import os
import socket
import time
import urllib.error
from abc import ABC, abstractmethod
from typing import Optional

from ..openai_http import openai_request
from ..cache import content_key
from ..seeding import seeded
from .antibodies import Antibody, normalise_text
from .generators import AntibodyGenerator, ClassInfo, Generated, GeneratorUnavailable
from .parsing import parse_list, screen_candidates

LLM_GENERATOR_VERSION = 1
NEAR_PROMPT = ("List {n} things that look visually similar to a {c} in a photo but are not a {c}: "
               "other objects, animals, plants or scenes that an image classifier could confuse "
               "with a {c}. Answer with a numbered list of short names only (1 to 4 words each), "
               "one per line, without explanations.")
CONTEXT_PROMPT = ("List {n} short descriptions of a {c} in an impossible, surreal or anomalous form "
                  "or setting that never occurs in ordinary photos, for example \"a {c} made of "
                  "clouds\" or \"a melting {c}\". Answer with a numbered list, one description per "
                  "line; every item must mention \"{c}\".")


class BackendError(RuntimeError):
    """No usable answer this time (transient): the generator logs it and retries."""


class ChatBackend(ABC):
    """One prompt in, one text answer out."""

    kind: str = ""
    model_id: str = ""

    @abstractmethod
    def complete(self, prompt: str, seed: int) -> str:
        """The model's answer; :class:`BackendError` when there is none this time."""

    @abstractmethod
    def params(self) -> dict:
        """Sampling settings, recorded in the bank's provenance."""


class TransformersChatBackend(ChatBackend):
    """A causal LM run with ``transformers`` (sampling seeded per call)."""

    kind = "hf"

    def __init__(self, model: str, device: str = "cpu", max_new_tokens: int = 128,
                 temperature: float = 0.7, dtype: str = "auto", local_files_only: bool = False):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id, self.device = model, device
        self.max_new_tokens, self.temperature, self.dtype = int(max_new_tokens), float(temperature), dtype
        kwargs = {"local_files_only": local_files_only}
        if dtype != "auto":
            dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
            kwargs[dtype_arg] = getattr(torch, dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
            self.model = AutoModelForCausalLM.from_pretrained(model, **kwargs).to(device).eval()
        except Exception as exc:  # OSError (not found / offline), ValueError (not a causal LM), ...
            raise GeneratorUnavailable(
                f"could not load the transformers model {model!r}: {exc}. Pass a local folder "
                "holding config.json, tokenizer and weights, or a Hub name that this machine can "
                "download (or has in its Hugging Face cache)") from exc
        self._torch = torch

    def params(self) -> dict:
        return {"temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                "dtype": self.dtype}

    def _inputs(self, prompt: str) -> dict:
        if getattr(self.tokenizer, "chat_template", None):
            enc = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                     add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)
        else:
            enc = self.tokenizer(prompt, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def complete(self, prompt: str, seed: int) -> str:
        torch = self._torch
        inputs = self._inputs(prompt)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 \
            else {"do_sample": False}
        try:
            with seeded(seed), torch.no_grad():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                          pad_token_id=pad, **sampling)
        except Exception as exc:  # e.g. out of memory on one prompt: report, keep going
            raise BackendError(f"generation failed: {exc}") from exc
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True)


class OpenAIChatBackend(ChatBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint over HTTP (stdlib only)."""

    kind = "openai"

    def __init__(self, url: str, model: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 60.0, temperature: float = 0.7, max_new_tokens: int = 256):
        base = url.rstrip("/")
        for suffix in ("/chat/completions", "/completions"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        if not base.startswith(("http://", "https://")):
            raise GeneratorUnavailable(f"OpenAI-compatible endpoint must be an http(s) URL such as "
                                       f"http://localhost:8000/v1, got {url!r}")
        self.base, self.timeout = base, float(timeout)
        self.temperature, self.max_new_tokens = float(temperature), int(max_new_tokens)
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.model_id = model or self._first_model()

    def params(self) -> dict:
        return {"endpoint": self.base, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens}

    def _request(self, path: str, payload: Optional[dict] = None) -> dict:
        return openai_request(self.base, path, payload, self.api_key, self.timeout)

    def _first_model(self) -> str:
        try:
            listing = self._request("/models")
            return str(listing["data"][0]["id"])
        except urllib.error.HTTPError as exc:
            raise GeneratorUnavailable(f"{self.base}/models answered HTTP {exc.code}: pass the "
                                       "model name explicitly (--llm-model)") from exc
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            raise GeneratorUnavailable(
                f"OpenAI-compatible endpoint {self.base} is unreachable ({exc}): start the server "
                "(e.g. `vllm serve MODEL` or `ollama serve`) or fix the URL") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GeneratorUnavailable(f"{self.base}/models did not list any model: pass the model "
                                       "name explicitly (--llm-model)") from exc

    def complete(self, prompt: str, seed: int) -> str:
        payload = {"model": self.model_id, "messages": [{"role": "user", "content": prompt}],
                   "temperature": self.temperature, "max_tokens": self.max_new_tokens, "seed": seed}
        try:
            answer = self._request("/chat/completions", payload)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404):
                raise GeneratorUnavailable(
                    f"{self.base}/chat/completions answered HTTP {exc.code} for model "
                    f"{self.model_id!r}: check the URL, the model name and the API key "
                    "($OPENAI_API_KEY)") from exc
            raise BackendError(f"HTTP {exc.code} from {self.base}") from exc
        except (socket.timeout, TimeoutError) as exc:
            raise BackendError(f"no answer within {self.timeout:g} s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise BackendError(f"no answer within {self.timeout:g} s") from exc
            raise BackendError(f"endpoint unreachable: {exc.reason}") from exc
        except (ConnectionError, ValueError) as exc:
            raise BackendError(f"broken answer: {exc}") from exc
        try:
            return str(answer["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"answer without choices[0].message.content: {str(answer)[:80]}") from exc


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
                    answer = self.backend.complete(prompt, seed)
                except BackendError as exc:
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
