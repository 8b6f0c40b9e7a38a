"""Multimodal LLM backends for ANTS behind one interface, with cost logging.

Select one with a spec string (yml arg ``mllm``):

* ``hf:<name or local path>``: a transformers vision-language model loaded with
  ``AutoProcessor`` + ``AutoModelForImageTextToText`` (LLaVA-1.5 ``llava-hf/llava-1.5-7b-hf``,
  Qwen2-VL ``Qwen/Qwen2-VL-2B-Instruct``, ...): prompts built with the processor's chat
  template, left-padded batches, greedy decoding;
* ``openai:<model>@<base_url>``: any OpenAI-compatible chat-completions endpoint that accepts
  images (OpenAI, vLLM, Ollama, LM Studio...), images sent as base64 JPEG data URLs, requests
  of a batch sent concurrently, ``temperature = 0``; the key is read from the environment
  variable ``mllm_api_key_env`` (none sent when it is unset);
* ``scripted``: deterministic canned answers computed from the pixels / the prompt. A TEST
  backend (it is not a model); it warns when built;
* ``none``: no MLLM (ANTS then scores exactly as NegLabel).

Every backend batches requests (``batch_size``) and keeps a :class:`CostLog` (batches,
requests, failures, seconds, generated tokens) logged after each call. A batch whose call
raises yields ``None`` answers and a warning; it never propagates.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import time
import urllib.error
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..openai_http import openai_request

log = logging.getLogger(__name__)

SPEC_HELP = ("use 'hf:<model name or local path>' (e.g. 'hf:Qwen/Qwen2-VL-2B-Instruct'), "
             "'openai:<model>@<base_url>' (e.g. 'openai:gpt-4o-mini@https://api.openai.com/v1'), "
             "'scripted' (deterministic test answers) or 'none'")


@dataclass
class CostLog:
    """What the MLLM has cost so far."""

    calls: int = 0
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    tokens: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class MLLMBackend:
    """Base: batching, failure handling and cost logging around ``_generate_batch``."""

    spec = "mllm"

    def __init__(self, batch_size: int = 16):
        if batch_size <= 0:
            raise ValueError(f"mllm_batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.cost = CostLog()

    def load(self) -> None:
        """Load weights / check the endpoint; raises with a clear message when impossible."""

    def _generate_batch(self, prompts: list[str], images: Optional[list[Image.Image]],
                        max_new_tokens: int) -> list[Optional[str]]:
        raise NotImplementedError

    def generate(self, prompts: Sequence[str], images: Optional[Sequence[Image.Image]] = None,
                 max_new_tokens: int = 30, task: str = "generate") -> list[Optional[str]]:
        """One answer per prompt (``None`` where the backend failed); ``images`` pair with prompts."""
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        answers: list[Optional[str]] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[i:i + self.batch_size])
            imgs = None if images is None else list(images[i:i + self.batch_size])
            start = time.perf_counter()
            try:
                out = list(self._generate_batch(chunk, imgs, max_new_tokens))
                if len(out) != len(chunk):
                    raise RuntimeError(f"backend returned {len(out)} answers for {len(chunk)} prompts")
            except Exception as exc:  # a failing MLLM must never stop the OOD stream
                log.warning("ANTS MLLM %s failed on a %s batch of %d (%s: %s); these images add no "
                            "labels", self.spec, task, len(chunk), type(exc).__name__, exc)
                out = [None] * len(chunk)
            elapsed = time.perf_counter() - start
            failed = sum(a is None for a in out)
            self.cost.calls += 1
            self.cost.requests += len(chunk)
            self.cost.failures += failed
            self.cost.seconds += elapsed
            log.info("ANTS MLLM %s %s: %d requests, %d failed, %.2f s (total: %s)", self.spec, task,
                     len(chunk), failed, elapsed, self.cost.as_dict())
            answers.extend(out)
        return answers


class ScriptedBackend(MLLMBackend):
    """Deterministic answers from ``script(prompt, image_or_None) -> str`` (tests only)."""

    spec = "scripted"

    def __init__(self, script: Optional[Callable[[str, Optional[Image.Image]], str]] = None,
                 batch_size: int = 16):
        super().__init__(batch_size)
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
        rgb = torch.from_numpy(np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32)).reshape(-1, 3).mean(0)
        colour = min(_COLOURS, key=lambda c: float(((rgb - torch.tensor(_COLOURS[c])) ** 2).sum()))
        light = "bright" if float(rgb.mean()) > 140 else "dim" if float(rgb.mean()) < 70 else "plain"
        return f"A {light} {colour} scene."
    h = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16)
    picks = [_NAMES[(h >> (4 * k)) % len(_NAMES)] + f" {(h >> (8 * k)) % 97}" for k in range(5)]
    return "\n".join(f"{k + 1}. {name}" for k, name in enumerate(picks))


class TransformersVLM(MLLMBackend):
    """A transformers image-text-to-text model, by hub name or local folder."""

    def __init__(self, source: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16):
        super().__init__(batch_size)
        self.source = source
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
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(self.source)
            model = AutoModelForImageTextToText.from_pretrained(self.source, dtype=self.dtype)
        except Exception as exc:
            raise RuntimeError(f"could not load the vision-language model {self.source!r} "
                               f"({type(exc).__name__}: {exc}). Download it once where there is "
                               "internet (huggingface-cli download NAME) and pass its local folder "
                               "as mllm: hf:/path/to/folder") from exc
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

    @torch.inference_mode()
    def _generate_batch(self, prompts, images, max_new_tokens):
        self.load()
        texts = [self._chat(p, images is not None) for p in prompts]
        kwargs = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images is not None:
            kwargs["images"] = images
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
    """An OpenAI-compatible ``/chat/completions`` endpoint with image input (stdlib urllib)."""

    def __init__(self, model: str, base_url: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, batch_size: int = 8):
        super().__init__(batch_size)
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"OpenAI-compatible base URL {base_url!r} must start with http(s)://")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.spec = f"openai:{model}@{self.base_url}"
        self.api_key_env, self.timeout_s = api_key_env, timeout_s

    def _call(self, path: str, payload: Optional[dict] = None) -> dict:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return openai_request(self.base_url, path, payload, key, self.timeout_s)

    def load(self) -> None:
        try:
            self._call("/models")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RuntimeError(f"OpenAI-compatible endpoint {self.base_url} is not reachable "
                               f"({exc}); check the URL, the server and {self.api_key_env}") from exc

    def _one(self, prompt: str, image: Optional[Image.Image], max_new_tokens: int) -> Optional[str]:
        content = [{"type": "text", "text": prompt}]
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": _jpeg_data_url(image)}})
        payload = {"model": self.model, "messages": [{"role": "user", "content": content}],
                   "max_tokens": max_new_tokens, "temperature": 0}
        try:
            reply = self._call("/chat/completions", payload)
            text = reply["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("ANTS MLLM %s: request failed (%s: %s)", self.spec, type(exc).__name__, exc)
            return None
        self.cost.tokens += int((reply.get("usage") or {}).get("completion_tokens") or 0)
        return text if isinstance(text, str) else None

    def _generate_batch(self, prompts, images, max_new_tokens):
        imgs = images if images is not None else [None] * len(prompts)
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            return list(pool.map(lambda pi: self._one(pi[0], pi[1], max_new_tokens), zip(prompts, imgs)))


def build_backend(spec: str, batch_size: int = 16, device: str = "auto", dtype: str = "auto",
                  api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0) -> Optional[MLLMBackend]:
    """The backend named by ``spec`` (not loaded yet); ``None`` for ``'none'``."""
    spec = (spec or "none").strip()
    if spec.lower() == "none":
        return None
    if spec.lower() == "scripted":
        warnings.warn("ANTS is using the 'scripted' MLLM: canned deterministic answers for tests, "
                      "not a model. Its numbers are not ANTS results.", stacklevel=2)
        return ScriptedBackend(batch_size=batch_size)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hf" and rest:
        return TransformersVLM(rest, device, dtype, batch_size)
    if sep and kind == "openai":
        model, at, url = rest.partition("@")
        if model and at and url:
            return OpenAIVision(model, url, api_key_env, timeout_s, batch_size)
    raise ValueError(f"unknown MLLM spec {spec!r}: {SPEC_HELP}")
