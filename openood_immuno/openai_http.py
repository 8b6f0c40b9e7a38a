"""The one HTTP call of the OpenAI-compatible clients (antibody LLM, ANTS MLLM): stdlib only."""
from __future__ import annotations

import json
import urllib.request
from typing import Optional


def openai_request(base_url: str, path: str, payload: Optional[dict] = None, api_key: str = "",
                   timeout: float = 60.0) -> dict:
    """GET (``payload=None``) or POST JSON to ``base_url + path``; returns the decoded JSON answer.

    Errors propagate (``urllib.error.URLError``/``HTTPError``, timeouts, ``ValueError`` for a
    non-JSON body): each caller maps them to its own message.
    """
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(base_url + path, data=data, headers=headers,
                                 method="GET" if data is None else "POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))
