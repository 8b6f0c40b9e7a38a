"""Credentials never reach what a run writes or prints.

A model reference may carry HTTP basic authentication in its URL
(``openai:gpt-4o@http://user:password@host:8000/v1``, :mod:`openood_immuno.llm.spec`). The
requests send it; result files (``run.json``, ``ood.csv`` labels, report, leaderboard, OpenOOD's
``config.yml`` and ``log.txt`` of the launcher) and the console get ``http://***@host:8000/v1``.
"""
from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]*@")


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@``."""
    return _USERINFO.sub(r"\1***@", text)


def redact_all(value: Any) -> Any:
    """:func:`redact` on every string inside dicts, lists and tuples (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_all(k): redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_all(v) for v in value)
    return value
