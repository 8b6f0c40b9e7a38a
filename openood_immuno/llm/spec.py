"""The one grammar of a model reference, shared by ``--generator`` and the ANTS ``mllm`` arg.

=================================  ====================================================
``hf:NAME_OR_PATH``                a transformers model: Hub name or local folder
``openai:MODEL@URL``               model ``MODEL`` of an OpenAI-compatible endpoint
``openai:URL``                     the first model that ``GET URL/models`` lists
``none`` / ``scripted`` / ...      a bare keyword, where the option accepts it
=================================  ====================================================

``URL`` is the API base (``http(s)://HOST[:PORT]/v1``); a trailing ``/chat/completions`` is
dropped. ``HOST`` may be a name, an IPv4 address or a bracketed IPv6 address (``[::1]``), with
``user:password@`` before it (sent as HTTP basic authentication, never printed). Anything else
is one :class:`SpecError` naming the option and every accepted form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from openood_immuno.core.redact import redact

from .http import api_base, is_http_url

FORMS = ("'hf:<model name or local path>' (e.g. 'hf:Qwen/Qwen2-VL-2B-Instruct')",
         "'openai:<model>@<base_url>' (e.g. 'openai:gpt-4o-mini@https://api.openai.com/v1')",
         "'openai:<base_url>' (the first model the endpoint lists)")
_MODEL_AT_URL = re.compile(r"^(?P<model>[^\s@]+?)@(?P<url>https?://\S+)$")


class SpecError(ValueError):
    """A model reference outside the grammar; the message names the option and the forms."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model reference.

    ``kind`` is ``'hf'``, ``'openai'`` or a keyword (``'none'``, ``'scripted'``, ``'wordnet'``);
    ``name`` the Hub name / local path (``hf``) or the model (``openai``; ``''`` = the first of
    ``GET /models``); ``url`` the API base of an ``openai`` endpoint.
    """

    kind: str
    name: str = ""
    url: str = ""

    def __str__(self) -> str:
        """The reference as written, with any ``user:password@`` of its URL shown as ``***@``."""
        if self.kind == "hf":
            return f"hf:{self.name}"
        if self.kind == "openai":
            url = redact(self.url)
            return f"openai:{self.name}@{url}" if self.name else f"openai:{url}"
        return self.kind


def parse_spec(text: str, option: str, keywords: Sequence[str] = ("none",)) -> ModelSpec:
    """Parse ``text`` given to ``option`` (named in the error); ``keywords`` are the bare words
    this option accepts besides ``hf:`` and ``openai:`` references."""
    raw = str(text if text is not None else "").strip()
    low = raw.lower()
    if low in keywords:
        return ModelSpec(low)
    kind, sep, rest = raw.partition(":")
    rest = rest.strip()
    if sep and kind == "hf" and rest:
        return ModelSpec("hf", rest)
    if sep and kind == "openai" and rest:
        if rest.lower().startswith(("http://", "https://")):
            if is_http_url(rest):
                return ModelSpec("openai", "", api_base(rest))
        m = _MODEL_AT_URL.match(rest)
        if m and is_http_url(m["url"]):
            return ModelSpec("openai", m["model"], api_base(m["url"]))
    why = (" (an openai: reference needs an http(s) base URL)" if sep and kind == "openai" and rest
           else "")
    forms = [f"'{k}'" for k in keywords] + list(FORMS)
    raise SpecError(f"unknown {option} {raw!r}{why}: use " + ", ".join(forms[:-1]) + " or " + forms[-1])
