"""Base of the local OpenAI-compatible test servers (loopback only, no logging)."""
import json
from http.server import BaseHTTPRequestHandler


class QuietJSONHandler(BaseHTTPRequestHandler):
    """``send_json`` / ``send_body`` helpers; subclasses implement ``do_GET`` / ``do_POST``."""

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
