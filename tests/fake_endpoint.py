"""Local OpenAI-compatible test servers: loopback only, no logging, every wait bounded."""
import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_HANG_S = 30.0   # a handler that "never answers" gives up after this, or when the test ends


class QuietJSONHandler(BaseHTTPRequestHandler):
    """``send_json`` / ``send_body`` / ``hang`` helpers; subclasses implement ``do_GET`` / ``do_POST``."""

    def log_message(self, *args):
        pass

    def send_body(self, body: bytes, code: int = 200) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj, code: int = 200) -> None:
        self.send_body(json.dumps(obj).encode(), code)

    def read_json(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def hang(self) -> None:
        """Never answer (until the test stops the server, at most MAX_HANG_S)."""
        self.server.stop.wait(MAX_HANG_S)

    def trickle(self, every_s: float = 0.5) -> None:
        """Answer 200 with a body that arrives one byte every ``every_s`` s, bounded."""
        body = b" " * 10_000
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(int(MAX_HANG_S / every_s)):
            if self.server.stop.wait(every_s):
                return
            try:
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
            except OSError:
                return


class FakeChat(QuietJSONHandler):
    """An OpenAI-compatible chat endpoint: ``GET /models`` lists ``fake-llm``; every ``POST`` is
    recorded in ``server.requests`` and answered by :meth:`answer` (``server.mode == "500"``: HTTP 500)."""

    def do_GET(self):
        self.send_json({"object": "list", "data": [{"id": "fake-llm"}]})

    def do_POST(self):
        payload = self.read_json()
        self.server.requests.append(payload)
        if self.server.mode == "500":
            self.send_error(500)
            return
        self.send_json({"choices": [{"message": {"content": self.answer(payload)}}],
                        "usage": {"completion_tokens": 3}})

    def answer(self, payload) -> str:
        raise NotImplementedError


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64   # a batch's requests arrive at once: none may wait for a SYN retry


@contextlib.contextmanager
def serving(handler, **attrs):
    """Serve ``handler`` on 127.0.0.1 (free port); ``attrs`` become server attributes."""
    srv = LoopbackServer(("127.0.0.1", 0), handler)
    srv.stop, srv.requests = threading.Event(), []
    for k, v in attrs.items():
        setattr(srv, k, v)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


def base_url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- replies without usable text (200, well-formed, nothing to use) ---------------------------
UNUSABLE = {"null": None, "empty": "", "whitespace": " \n\t ", "unparseable": "@@@ ### !!!\n~~~ 123",
            "reasoning only": None}
"""Contents of a 200 reply that carries no usable text; ``reasoning only`` is what a reasoning
model behind vLLM sends when its budget ends inside the reasoning: ``content: null`` beside a
``reasoning_content``."""


def is_image_request(payload) -> bool:
    content = payload["messages"][0]["content"]
    return isinstance(content, list) and any(part.get("type") == "image_url" for part in content)


class ContentEndpoint(QuietJSONHandler):
    """Lists model ``tiny``; answers every chat request 200 with ``server.content(payload)`` as
    ``choices[0].message.content`` (``None`` is JSON ``null``, sent beside a
    ``reasoning_content``, as vLLM's reasoning parsers do). Payloads go to ``server.requests``."""

    def do_GET(self):
        self.send_json({"data": [{"id": "tiny"}]})

    def do_POST(self):
        payload = self.read_json()
        self.server.requests.append(payload)
        content = self.server.content(payload)
        message = {"role": "assistant", "content": content}
        if content is None:
            message["reasoning_content"] = "The user wants a short description. Let me look at"
        self.send_json({"choices": [{"index": 0, "message": message, "finish_reason": "length"}],
                        "usage": {"completion_tokens": 0 if content is None else 3}})
