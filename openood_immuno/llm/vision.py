"""Multimodal LLM backends (ANTS) behind one interface, with honest counting.

Select one with :func:`build_vision_backend` and a model reference (:mod:`.spec`):

* ``hf:<name or local path>``: a transformers vision-language model loaded with
  ``AutoProcessor`` + ``AutoModelForImageTextToText`` (LLaVA-1.5 ``llava-hf/llava-1.5-7b-hf``,
  Qwen2-VL ``Qwen/Qwen2-VL-2B-Instruct``, ...), weights located by :func:`~.hub.locate`
  (offline in seconds): prompts built with the processor's chat template, left-padded
  batches, greedy decoding;
* ``openai:<model>@<base_url>`` (or ``openai:<base_url>``: the first listed model): any
  OpenAI-compatible chat-completions endpoint that accepts images, images sent as base64 JPEG
  data URLs, the requests of a batch sent concurrently, ``temperature = 0``;
* ``scripted``: deterministic canned answers computed from the pixels / the prompt. A TEST
  backend (it is not a model); it warns when built;
* ``none``: no MLLM (:func:`build_vision_backend` returns ``None``).

Every backend resizes the images to ``image_size`` x ``image_size`` (bilinear) before sending
them when ``image_size > 0`` (the ANTS authors' Qwen2-VL path: 56), and passes them as read
otherwise (their LLaVA path: the processor's own resize). Every backend batches requests
(``batch_size``) and keeps a :class:`~.cost.CostLog` logged after each call. A batch whose call raises yields ``None`` answers and a warning; it never
propagates. An answer with no usable text (``null`` or empty content, whitespace, or one the
caller's ``accept`` rejects: nothing that parses into a sentence or a label) is a failed request
too: it answers ``None`` and counts in ``failures`` and ``unusable``. After the
:class:`~.cost.FailureBudget` is spent (5 batches in a row without any usable answer, or 300 s
of them) the backend is given up: later requests are not sent, they count as
``skipped`` and answer ``None``. Ctrl-C during concurrent requests shuts them at once.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from .cost import FAILURE_BUDGET_S, GIVE_UP_AFTER, CostLog, FailureBudget
from .errors import BackendUnavailable
from .http import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT_S, EndpointError, OpenAIClient
from .spec import parse_spec

log = logging.getLogger(__name__)

SPEC_KEYWORDS = ("none", "scripted")


class MLLMBackend:
    """Base: batching, failure handling, counting and the failure budget around ``_generate_batch``."""

    spec = "mllm"

    def __init__(self, batch_size: int = 16, give_up_after: int = GIVE_UP_AFTER,
                 failure_budget_s: float = FAILURE_BUDGET_S, image_size: int = 0):
        if batch_size <= 0:
            raise ValueError(f"mllm_batch_size must be >= 1, got {batch_size}")
        if image_size < 0:
            raise ValueError(f"mllm_image_size must be >= 0 (0 = as read), got {image_size}")
        self.batch_size, self.image_size = batch_size, int(image_size)
        self.cost = CostLog()
        self.budget = FailureBudget(int(give_up_after), float(failure_budget_s))
        self._gave_up_logged = False

    def load(self) -> None:
        """Load weights / check the endpoint; :class:`BackendUnavailable` when impossible."""

    def _generate_batch(self, prompts: list[str], images: Optional[list[Image.Image]],
                        max_new_tokens: int) -> list[Optional[str]]:
        raise NotImplementedError

    def generate(self, prompts: Sequence[str], images: Optional[Sequence[Image.Image]] = None,
                 max_new_tokens: int = 30, task: str = "generate",
                 accept: Optional[Callable[[int, str], bool]] = None) -> list[Optional[str]]:
        """One answer per prompt (``None`` where the backend failed or the answer held no usable
        text); ``images`` pair with prompts. ``accept(i, text)`` says whether the answer to prompt
        ``i`` is usable (e.g. parses into a description); a rejected one counts as failed."""
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        if images is not None and self.image_size:
            size = (self.image_size, self.image_size)
            images = [im.resize(size, Image.BILINEAR) for im in images]
        answers: list[Optional[str]] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[i:i + self.batch_size])
            imgs = None if images is None else list(images[i:i + self.batch_size])
            if self.budget.exhausted:
                self.cost.skipped += len(chunk)
                if not self._gave_up_logged:
                    log.warning("ANTS MLLM %s given up after %s: later requests are not sent and "
                                "add no labels", self.spec, self.budget.reason())
                    self._gave_up_logged = True
                answers.extend([None] * len(chunk))
                continue
            start = time.perf_counter()
            error = ""
            try:
                out = list(self._generate_batch(chunk, imgs, max_new_tokens))
                if len(out) != len(chunk):
                    raise RuntimeError(f"backend returned {len(out)} answers for {len(chunk)} prompts")
            except Exception as exc:  # a failing MLLM must never stop the OOD stream
                error = f"{type(exc).__name__}: {exc}"
                log.warning("ANTS MLLM %s failed on a %s batch of %d (%s); these images add no "
                            "labels", self.spec, task, len(chunk), error)
                out = [None] * len(chunk)
            elapsed = time.perf_counter() - start
            unusable = 0
            for k, answer in enumerate(out):
                if answer is not None and (not isinstance(answer, str) or not answer.strip()
                                           or (accept is not None and not accept(i + k, answer))):
                    out[k], unusable = None, unusable + 1
            if unusable:
                log.warning("ANTS MLLM %s %s: %d of %d answers held no usable text (null, empty or "
                            "nothing parseable): counted as failed requests", self.spec, task,
                            unusable, len(chunk))
                error = error or f"{unusable} answers without usable text"
            failed = sum(a is None for a in out)
            self.cost.calls += 1
            self.cost.requests += len(chunk)
            self.cost.failures += failed
            self.cost.unusable += unusable
            self.cost.seconds += elapsed
            if imgs is not None:
                self.cost.images += len(chunk) - failed
            self.budget.record(failed < len(chunk), elapsed, error or f"{failed} of {len(chunk)} failed")
            log.info("ANTS MLLM %s %s: %d requests, %d failed, %.2f s (total: %s)", self.spec, task,
                     len(chunk), failed, elapsed, self.cost.as_dict())
            answers.extend(out)
        return answers


class ScriptedBackend(MLLMBackend):
    """Deterministic answers from ``script(prompt, image_or_None) -> str`` (tests only)."""

    spec = "scripted"

    def __init__(self, script: Optional[Callable[[str, Optional[Image.Image]], str]] = None,
                 batch_size: int = 16, image_size: int = 0):
        super().__init__(batch_size, image_size=image_size)
        self.script = script or canned_answer

    def _generate_batch(self, prompts, images, max_new_tokens):
        imgs = images if images is not None else [None] * len(prompts)
        return [self.script(p, im) for p, im in zip(prompts, imgs)]


_COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200),
            "yellow": (220, 200, 50), "brown": (120, 80, 40), "grey": (128, 128, 128),
            "white": (235, 235, 235), "black": (20, 20, 20)}
_NAMES = ("lantern", "quarry", "meadow", "harbour", "glacier", "orchard", "canyon", "tapestry",
          "mosaic", "lagoon", "furnace", "bramble", "citadel", "dune", "reef", "pylon")


def canned_answer(prompt: str, image: Optional[Image.Image]) -> str:
    """The ``scripted`` backend's answer: colour/brightness words for an image, else a numbered
    list of five words chosen by a hash of the prompt."""
    if image is not None:
        rgb = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1, 3).mean(0)
        colour = min(_COLOURS, key=lambda c: float(((rgb - np.asarray(_COLOURS[c], np.float32)) ** 2).sum()))
        light = "bright" if float(rgb.mean()) > 140 else "dim" if float(rgb.mean()) < 70 else "plain"
        return f"A {light} {colour} scene."
    h = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16)
    picks = [_NAMES[(h >> (4 * k)) % len(_NAMES)] + f" {(h >> (8 * k)) % 97}" for k in range(5)]
    return "\n".join(f"{k + 1}. {name}" for k, name in enumerate(picks))


class TransformersVLM(MLLMBackend):
    """A transformers image-text-to-text model, by hub name or local folder."""

    def __init__(self, source: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 processor_kwargs: Optional[dict] = None, **common):
        import torch

        super().__init__(batch_size, **common)
        self.source = source
        self.processor_kwargs = dict(processor_kwargs or {})   # e.g. Qwen2-VL's min/max_pixels
        self.spec = f"hf:{source}"
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else "cpu" if device == "auto" else device)
        if dtype == "auto":
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        elif isinstance(getattr(torch, str(dtype), None), torch.dtype):
            self.dtype = getattr(torch, dtype)
        else:
            raise ValueError(f"unknown mllm_dtype {dtype!r}: use 'auto', 'float32', 'float16' or "
                             "'bfloat16'")
        self.model = None
        self.processor = None

    def load(self) -> None:
        if self.model is not None:
            return
        from .hub import locate

        try:  # before importing transformers' model classes: offline fails in well under a second
            where = locate(self.source)
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"could not load the vision-language model {self.source!r}: "
                                     f"{exc}") from exc
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(where.source, local_files_only=where.local_files_only,
                                                      **self.processor_kwargs)
            model = AutoModelForImageTextToText.from_pretrained(
                where.source, dtype=self.dtype, local_files_only=where.local_files_only)
        except Exception as exc:
            raise BackendUnavailable(f"could not load the vision-language model {self.source!r} "
                                     f"({type(exc).__name__}: {exc}). Download it once where there "
                                     "is internet (huggingface-cli download NAME) and pass its local "
                                     "folder as mllm: hf:/path/to/folder") from exc
        if not getattr(processor, "chat_template", None):
            raise ValueError(f"the processor of {self.source!r} has no chat template: use an "
                             "instruction-tuned checkpoint (e.g. llava-hf/llava-1.5-7b-hf)")
        tok = processor.tokenizer
        tok.padding_side = "left"  # batched generation continues from the right end
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.processor, self.model = processor, model.to(self.device).eval()

    def _chat(self, prompt: str, with_image: bool) -> str:
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                  add_generation_prompt=True, tokenize=False)

    def _generate_batch(self, prompts, images, max_new_tokens):
        import torch

        self.load()
        texts = [self._chat(p, images is not None) for p in prompts]
        kwargs = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images is not None:
            kwargs["images"] = images
        with torch.inference_mode():
            inputs = self.processor(**kwargs).to(self.device)
            inputs = {k: v.to(self.dtype) if torch.is_floating_point(v) else v for k, v in inputs.items()}
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.processor.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        self.cost.tokens += int((new != self.processor.tokenizer.pad_token_id).sum())
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]


def _jpeg_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIVision(MLLMBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint with image input."""

    def __init__(self, model: str, base_url: str, api_key_env: str = DEFAULT_API_KEY_ENV,
                 timeout_s: float = DEFAULT_TIMEOUT_S, batch_size: int = 8, **common):
        super().__init__(batch_size, **common)
        self.client = OpenAIClient(base_url, api_key_env, timeout_s)
        self.model, self.base_url = model, self.client.shown_url   # requests go through self.client
        self.spec = f"openai:{model}@{self.base_url}" if model else f"openai:{self.base_url}"

    def load(self) -> None:
        try:
            listed = self.client.models()
        except EndpointError as exc:
            raise BackendUnavailable(f"OpenAI-compatible endpoint {self.base_url} is not reachable "
                                     f"({exc}); check the URL, the server and "
                                     f"${self.client.api_key_env}") from exc
        if not self.model:
            self.model = listed[0]
            self.spec = f"openai:{self.model}@{self.base_url}"

    def _one(self, prompt: str, image: Optional[Image.Image], max_new_tokens: int) -> tuple[Optional[str], int]:
        content = [{"type": "text", "text": prompt}]
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": _jpeg_data_url(image)}})
        try:
            text, tokens = self.client.chat(self.model, content, max_new_tokens, 0.0)
        except EndpointError as exc:
            if exc.kind != "cancelled":
                log.warning("ANTS MLLM %s: request failed (%s: %s)", self.spec, exc.kind, exc)
            return None, 0
        return text, tokens

    def _generate_batch(self, prompts, images, max_new_tokens):
        imgs = images if images is not None else [None] * len(prompts)
        pool = ThreadPoolExecutor(max_workers=len(prompts))
        try:
            futures = [pool.submit(self._one, p, im, max_new_tokens) for p, im in zip(prompts, imgs)]
            pending = set(futures)
            while pending:  # short waits, so Ctrl-C is seen at once
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            results = [f.result() for f in futures]
            self.cost.tokens += sum(tokens for _, tokens in results)
            return [text for text, _ in results]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            self.client.abort()
            raise
        finally:
            pool.shutdown(wait=False)


def build_vision_backend(spec: str, batch_size: int = 16, device: str = "auto", dtype: str = "auto",
                         api_key_env: str = DEFAULT_API_KEY_ENV, timeout_s: float = DEFAULT_TIMEOUT_S,
                         give_up_after: int = GIVE_UP_AFTER,
                         failure_budget_s: float = FAILURE_BUDGET_S,
                         image_size: int = 0,
                         processor_kwargs: Optional[dict] = None) -> Optional[MLLMBackend]:
    """The backend named by ``spec`` (not loaded yet); ``None`` for ``'none'``.

    ``processor_kwargs`` go to ``AutoProcessor.from_pretrained`` of an ``hf:`` model (e.g.
    Qwen2-VL's ``min_pixels`` / ``max_pixels``); other backends refuse them (they have no
    processor)."""
    common = {"give_up_after": give_up_after, "failure_budget_s": failure_budget_s,
              "image_size": image_size}
    parsed = parse_spec(spec or "none", "mllm", SPEC_KEYWORDS)
    if parsed.kind == "none":
        return None
    if processor_kwargs and parsed.kind != "hf":
        raise ValueError(f"mllm_min_pixels / mllm_max_pixels set the processor of an hf: model; "
                         f"mllm {spec!r} has none: set them to 0")
    if parsed.kind == "scripted":
        warnings.warn("ANTS is using the 'scripted' MLLM: canned deterministic answers for tests, "
                      "not a model. Its numbers are not ANTS results.", stacklevel=2)
        return ScriptedBackend(batch_size=batch_size, image_size=image_size)
    if parsed.kind == "hf":
        return TransformersVLM(parsed.name, device, dtype, batch_size, processor_kwargs, **common)
    return OpenAIVision(parsed.name, parsed.url, api_key_env, timeout_s, batch_size, **common)
