"""The one OpenAI-compatible JSON client (stdlib ``http.client``), for chat and vision alike.

* **Total deadline.** ``timeout_s`` bounds the *whole* request (connect, send, headers and
  body), not each socket read: a watchdog shuts the socket at the deadline, so an endpoint
  that trickles a byte every 0.5 s still fails at ``timeout_s``.
* **API key.** Read at each request from the environment variable ``api_key_env`` (default
  ``OPENAI_API_KEY``) and sent as ``Authorization: Bearer``; nothing is sent when it is unset.
* **Errors** are one :class:`EndpointError` whose ``kind`` is ``'unreachable'``,
  ``'timeout'``, ``'http'`` (with ``status``), ``'bad_answer'`` or ``'cancelled'``.
* **Cancel.** :meth:`OpenAIClient.abort` shuts every request in flight (used on Ctrl-C, so no
  worker thread outlives the interrupt by more than a moment).

* **URLs.** The host may be a name, an IPv4 or a bracketed IPv6 address (``http://[::1]:8000/v1``);
  ``user:password@`` in the URL is sent as HTTP basic authentication (unless an API key is
  sent) and never appears in a message (:func:`without_credentials`).
* **Size cap.** An answer larger than :data:`MAX_ANSWER_BYTES` (16 MiB) is a ``'bad_answer'``
  error, refused from its ``Content-Length`` or after reading one byte past the cap, never read whole.

Proxies from ``http_proxy`` / ``https_proxy`` / ``no_proxy`` are honoured as urllib does.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import urllib.request
from typing import Optional
from urllib.parse import unquote, urlsplit, urlunsplit

from openood_immuno.core.redact import redact

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
MAX_ANSWER_BYTES = 16 << 20   # no chat or model-list answer comes near this


class EndpointError(RuntimeError):
    """One failed request; ``kind`` classifies it, ``status`` is the HTTP code of ``'http'``."""

    def __init__(self, kind: str, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.kind, self.status = kind, status

    @property
    def fatal(self) -> bool:
        """Retrying cannot help: the URL, the model name or the key is wrong (401/403/404)."""
        return self.kind == "http" and self.status in (401, 403, 404)


def api_base(url: str) -> str:
    """``url`` without a trailing ``/``, ``/chat/completions`` or ``/completions``."""
    base = str(url).rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def is_http_url(text: str) -> bool:
    """Whether ``text`` is an ``http(s)://`` URL with a host (a name, IPv4, or ``[IPv6]``), an
    optional ``user:password@`` and a valid port; no spaces."""
    if not str(text).lower().startswith(("http://", "https://")) or any(c.isspace() for c in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return bool(parts.hostname)


def _netloc(parts) -> str:
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port}" if parts.port is not None else host


def without_credentials(url: str) -> tuple[str, Optional[str]]:
    """``(url without user:password@, the Basic Authorization header or None)``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    header = "Basic " + base64.b64encode(user_pass.encode("utf-8")).decode("ascii")
    return urlunsplit(parts._replace(netloc=_netloc(parts))), header


def _shut(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _connection(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for ``url`` (through the environment's proxy if any) and the request target."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(p.hostname, p.port or 80, timeout=timeout_s)
            conn.set_tunnel(parts.hostname, port)
            return conn, target
        return http.client.HTTPConnection(p.hostname, p.port or 80, timeout=timeout_s), url
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.hostname, port, timeout=timeout_s), target


def request_json(url: str, payload: Optional[dict] = None, headers: Optional[dict] = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, registry: Optional["_InFlight"] = None,
                 max_bytes: int = MAX_ANSWER_BYTES) -> dict:
    """GET (``payload=None``) or POST JSON to ``url`` within ``timeout_s`` seconds in total.

    Returns the decoded JSON object; raises :class:`EndpointError` for anything else (an
    answer over ``max_bytes``: ``'bad_answer'``, without reading it whole).
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    url, basic = without_credentials(url)
    body = None if payload is None else json.dumps(payload).encode("utf-8")
    head = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    if basic and not any(k.lower() == "authorization" for k in head):
        head["Authorization"] = basic
    conn, target = _connection(url, timeout_s)
    expired = threading.Event()
    opened: list[socket.socket] = []   # the socket, kept: http.client drops conn.sock early

    def expire():
        expired.set()
        _shut(opened[0] if opened else None)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        opened.append(conn.sock)
        if registry is not None:
            registry.add(conn.sock)
        if expired.is_set():
            raise TimeoutError
        conn.request("GET" if body is None else "POST", target, body, head)
        resp = conn.getresponse()
        length = resp.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > max_bytes:
            raise _TooLarge(f"{int(length)} bytes announced")
        data = resp.read(max_bytes + 1)
        if expired.is_set():
            raise TimeoutError
        if len(data) > max_bytes:
            raise _TooLarge("more than that sent")
    except _TooLarge as exc:
        raise EndpointError("bad_answer", f"the answer from {url} is larger than {max_bytes / 2**20:g} MiB "
                                          f"({exc}): not read; check the URL (it must be an "
                                          "OpenAI-compatible API)") from None
    except Exception as exc:
        if registry is not None and registry.cancelled:
            raise EndpointError("cancelled", "cancelled") from exc
        if expired.is_set() or isinstance(exc, (socket.timeout, TimeoutError)):
            raise EndpointError("timeout", f"no answer within {timeout_s:g} s") from exc
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise EndpointError("unreachable", f"{url} is unreachable ({reason})") from exc
    finally:
        timer.cancel()
        if registry is not None and opened:
            registry.discard(opened[0])
        conn.close()
    if resp.status >= 400:
        raise EndpointError("http", f"HTTP {resp.status} from {url}", resp.status)
    try:
        answer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EndpointError("bad_answer", f"not a JSON answer from {url} ({type(exc).__name__}: "
                                          f"{data[:60]!r})") from exc
    if not isinstance(answer, dict):
        raise EndpointError("bad_answer", f"not a JSON object from {url}: {str(answer)[:60]}")
    return answer


class _TooLarge(Exception):
    """An answer over the size cap (turned into a ``'bad_answer'`` EndpointError)."""


class _InFlight:
    """The sockets of one client's requests in flight, so :meth:`OpenAIClient.abort` can shut them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._socks: set = set()
        self.cancelled = False

    def add(self, sock) -> None:
        with self._lock:
            if self.cancelled:
                raise EndpointError("cancelled", "cancelled")
            self._socks.add(sock)

    def discard(self, sock) -> None:
        with self._lock:
            self._socks.discard(sock)

    def shut_all(self) -> None:
        with self._lock:
            self.cancelled = True
            for sock in list(self._socks):
                _shut(sock)


class OpenAIClient:
    """An OpenAI-compatible API at ``base_url`` (``http(s)://HOST[:PORT]/v1``)."""

    def __init__(self, base_url: str, api_key_env: str = DEFAULT_API_KEY_ENV,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        if not is_http_url(str(base_url)):
            raise ValueError(f"OpenAI-compatible endpoint must be an http(s) URL such as "
                             f"http://localhost:8000/v1, got {without_credentials(str(base_url))[0]!r}")
        if not float(timeout_s) > 0:
            raise ValueError(f"the request timeout must be > 0 seconds, got {timeout_s}")
        self.base_url = api_base(base_url)
        self.shown_url = redact(self.base_url)   # for messages and records: no user:password@
        self.api_key_env, self.timeout_s = str(api_key_env or ""), float(timeout_s)
        self._inflight = _InFlight()

    def request(self, path: str, payload: Optional[dict] = None) -> dict:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return request_json(self.base_url + path, payload, headers, self.timeout_s, self._inflight)

    def models(self) -> list[str]:
        """The model ids of ``GET /models`` (``bad_answer`` when it lists none)."""
        listing = self.request("/models")
        try:
            ids = [str(m["id"]) for m in listing["data"]]
        except (KeyError, TypeError) as exc:
            raise EndpointError("bad_answer", f"{self.shown_url}/models did not list models: "
                                              f"{str(listing)[:60]}") from exc
        if not ids:
            raise EndpointError("bad_answer", f"{self.shown_url}/models lists no model")
        return ids

    def chat(self, model: str, content, max_tokens: int, temperature: float,
             seed: Optional[int] = None) -> tuple[str, int]:
        """One user turn (``content``: a string or OpenAI content parts) -> (answer, completion tokens)."""
        payload = {"model": model, "messages": [{"role": "user", "content": content}],
                   "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if seed is not None:
            payload["seed"] = int(seed)
        reply = self.request("/chat/completions", payload)
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise EndpointError("bad_answer", "answer without choices[0].message.content: "
                                              f"{str(reply)[:80]}") from exc
        if text is not None and not isinstance(text, str):
            raise EndpointError("bad_answer", f"choices[0].message.content is not text: {str(text)[:60]}")
        usage = reply.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else 0
        return text or "", int(tokens) if isinstance(tokens, (int, float)) else 0

    def abort(self) -> None:
        """Shut every request in flight (they raise ``'cancelled'``); later requests run normally."""
        inflight, self._inflight = self._inflight, _InFlight()
        inflight.shut_all()
