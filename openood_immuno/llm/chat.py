"""Text chat backends: one prompt in, one answer out (Immuno-VLM antibody generation).

* :class:`TransformersChatBackend` (``hf:NAME_OR_PATH``) -- any causal LM, weights located by
  :func:`~.hub.locate` (offline in seconds); the chat template is used when the tokenizer has
  one, the raw prompt otherwise; sampling seeded per call.
* :class:`OpenAIChatBackend` (``openai:MODEL@URL`` / ``openai:URL``) -- ``POST
  {url}/chat/completions`` through :class:`~.http.OpenAIClient`; the model defaults to the first
  of ``GET {url}/models``.

:meth:`ChatBackend.complete` counts every request in :attr:`ChatBackend.cost` and keeps a
:class:`~.cost.FailureBudget`: once it is exhausted, or on an answer that retrying cannot fix
(HTTP 401/403/404), it raises :class:`~.errors.BackendUnavailable`; a transient failure
raises :class:`~.errors.RequestFailed`.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod

from .cost import FAILURE_BUDGET_S, GIVE_UP_AFTER, CostLog, FailureBudget
from .errors import BackendUnavailable, RequestFailed
from .http import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT_S, EndpointError, OpenAIClient
from .spec import ModelSpec


class ChatBackend(ABC):
    """Counting and the failure budget around :meth:`_complete`."""

    kind: str = ""
    model_id: str = ""

    def __init__(self, give_up_after: int = GIVE_UP_AFTER,
                 failure_budget_s: float = FAILURE_BUDGET_S):
        self.cost = CostLog()
        self.budget = FailureBudget(int(give_up_after), float(failure_budget_s))

    @abstractmethod
    def _complete(self, prompt: str, seed: int) -> str:
        """The model's answer; :class:`RequestFailed` / :class:`BackendUnavailable` otherwise."""

    @abstractmethod
    def params(self) -> dict:
        """Sampling settings, recorded in the bank's provenance."""

    def complete(self, prompt: str, seed: int) -> str:
        """One answer, counted; gives the backend up once its failure budget is spent. An answer
        with no usable text (``None``, empty, whitespace) is a failed request (``failures`` and
        ``unusable``), raised as :class:`RequestFailed`, as ANTS's vision backends count it."""
        if self.budget.exhausted:
            self.cost.skipped += 1
            raise BackendUnavailable(f"{self.kind}:{self.model_id} given up after {self.budget.reason()}")
        start = time.perf_counter()
        self.cost.calls += 1
        self.cost.requests += 1
        try:
            answer = self._complete(prompt, seed)
        except (RequestFailed, BackendUnavailable) as exc:
            elapsed = time.perf_counter() - start
            self.cost.failures += 1
            self.cost.seconds += elapsed
            self.budget.record(False, elapsed, str(exc))
            if isinstance(exc, RequestFailed) and self.budget.exhausted:
                raise BackendUnavailable(f"{self.kind}:{self.model_id} given up after "
                                         f"{self.budget.reason()}") from exc
            raise
        elapsed = time.perf_counter() - start
        self.cost.seconds += elapsed
        if not isinstance(answer, str) or not answer.strip():   # null, empty or whitespace: no answer
            self.cost.failures += 1
            self.cost.unusable += 1
            error = f"{self.kind}:{self.model_id} answered no usable text ({answer!r:.40})"
            self.budget.record(False, elapsed, error)
            if self.budget.exhausted:
                raise BackendUnavailable(f"{self.kind}:{self.model_id} given up after {self.budget.reason()}")
            raise RequestFailed(error)
        self.budget.record(True, 0.0)
        return answer


class TransformersChatBackend(ChatBackend):
    """A causal LM run with ``transformers`` (sampling seeded per call)."""

    kind = "hf"

    def __init__(self, model: str, device: str = "cpu", max_new_tokens: int = 128,
                 temperature: float = 0.7, dtype: str = "auto", **budget):
        super().__init__(**budget)
        from .hub import locate

        self.model_id, self.device = model, device
        self.max_new_tokens, self.temperature, self.dtype = int(max_new_tokens), float(temperature), dtype
        try:  # before importing transformers' model classes: offline fails in well under a second
            where = locate(model)
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"could not load the transformers model {model!r}: {exc}") from exc
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            kwargs = {"local_files_only": where.local_files_only}
            if dtype != "auto":
                kwargs["dtype"] = getattr(torch, dtype)
            self.tokenizer = AutoTokenizer.from_pretrained(where.source, local_files_only=where.local_files_only)
            self.model = AutoModelForCausalLM.from_pretrained(where.source, **kwargs).to(device).eval()
        except Exception as exc:  # OSError (files missing), ValueError (not a causal LM), ...
            raise BackendUnavailable(
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

    def _complete(self, prompt: str, seed: int) -> str:
        from openood_immuno.core.seeding import seeded

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
            raise RequestFailed(f"generation failed: {exc}") from exc
        new = out[0, inputs["input_ids"].shape[1]:]
        self.cost.tokens += int(new.numel())
        return self.tokenizer.decode(new, skip_special_tokens=True)


class OpenAIChatBackend(ChatBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint (model: given, or the first listed)."""

    kind = "openai"

    def __init__(self, url: str, model: str = "", api_key_env: str = DEFAULT_API_KEY_ENV,
                 timeout_s: float = DEFAULT_TIMEOUT_S, temperature: float = 0.7,
                 max_new_tokens: int = 256, **budget):
        super().__init__(**budget)
        try:
            self.client = OpenAIClient(url, api_key_env, timeout_s)
        except ValueError as exc:
            raise BackendUnavailable(str(exc)) from exc
        self.base, self.timeout_s = self.client.shown_url, self.client.timeout_s   # requests: self.client
        self.temperature, self.max_new_tokens = float(temperature), int(max_new_tokens)
        self.model_id = model or self._first_model()

    def params(self) -> dict:
        return {"endpoint": self.base, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens}

    def _first_model(self) -> str:
        try:
            return self.client.models()[0]
        except EndpointError as exc:
            if exc.kind == "http":
                raise BackendUnavailable(f"{self.base}/models answered HTTP {exc.status}: name the "
                                         "model in the spec, openai:MODEL@URL") from exc
            if exc.kind == "bad_answer":
                raise BackendUnavailable(f"{exc}: name the model in the spec, openai:MODEL@URL") from exc
            raise BackendUnavailable(
                f"OpenAI-compatible endpoint {self.base} is unreachable ({exc}): start the server "
                "(e.g. `vllm serve MODEL` or `ollama serve`) or fix the URL") from exc

    def _complete(self, prompt: str, seed: int) -> str:
        try:
            text, tokens = self.client.chat(self.model_id, prompt, self.max_new_tokens,
                                            self.temperature, seed)
        except EndpointError as exc:
            if exc.fatal:
                raise BackendUnavailable(
                    f"{self.base}/chat/completions answered HTTP {exc.status} for model "
                    f"{self.model_id!r}: check the URL, the model name and the API key "
                    f"(${self.client.api_key_env})") from exc
            raise RequestFailed(str(exc)) from exc
        self.cost.tokens += tokens
        return text


def build_chat_backend(spec: ModelSpec, *, device: str = "cpu", dtype: str = "auto",
                       api_key_env: str = DEFAULT_API_KEY_ENV, timeout_s: float = DEFAULT_TIMEOUT_S,
                       temperature: float = 0.7, max_new_tokens: int = 256,
                       give_up_after: int = GIVE_UP_AFTER,
                       failure_budget_s: float = FAILURE_BUDGET_S) -> ChatBackend:
    """The chat backend of an ``hf`` or ``openai`` :class:`~.spec.ModelSpec` (loaded/checked now)."""
    budget = {"give_up_after": give_up_after, "failure_budget_s": failure_budget_s}
    if spec.kind == "hf":
        return TransformersChatBackend(spec.name, device, max_new_tokens, temperature, dtype, **budget)
    if spec.kind == "openai":
        return OpenAIChatBackend(spec.url, spec.name, api_key_env, timeout_s, temperature,
                                 max_new_tokens, **budget)
    raise ValueError(f"{spec} is not a chat model reference (use hf:... or openai:...)")
