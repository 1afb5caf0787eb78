"""A real HTTP server on loopback for outbound-client tests that need more than test_http_client.py has.

The fixtures are in :mod:`tests.support.outbound_http_fixtures` (``pytest_plugins``); this module holds what
the tests import.

Routes (every response has ``Server: test-server`` and a fixed ``Date``, so records can be compared whole):

* ``/json``: 200, ``{"items": [1, 2]}``;
* ``/digest``: 401 with a ``WWW-Authenticate: Digest`` challenge, or 200 ``{"ok": true}`` once the request
  carries a Digest ``Authorization`` header;
* ``/flaky/<n>/<key>``: 503 ``busy`` for the first ``n`` requests with that ``key``, then 200 ``fine``;
* ``/charset/<charset>``: 200, the ASCII bytes of :data:`FORM_WITH_TOKEN` labelled
  ``text/plain; charset=<charset>``;
* ``/hang-in-body``: 200 with ``Content-Length: 100``, sends 10 bytes, sets ``in_body`` and waits for
  ``release`` before sending the rest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

FIXED_DATE = "Sat, 28 Nov 2026 10:00:00 GMT"
TOKEN = "tok_live_5e4d3c2b1a09f8e7"
FORM_WITH_TOKEN = f"access_token={TOKEN}&x=1"
DIGEST_CHALLENGE = 'Digest realm="audit", nonce="6f8d4c1d9a51", qop="auth", algorithm=MD5'


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class OutboundServer:
    base_url: str
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    in_body: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def version_string(self) -> str:
        return "test-server"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return FIXED_DATE

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):  # a client that gave up (an interrupted upload)
            self.close_connection = True

    def do_GET(self) -> None:
        state: OutboundServer = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        state.received.append(Received(self.command, self.path, dict(self.headers.items())))
        route = self.path.split("?", 1)[0]
        if route == "/json":
            self.reply(200, "application/json", b'{"items": [1, 2]}')
        elif route == "/digest":
            self.digest()
        elif route.startswith("/flaky/"):
            _, _, failures, key = route.split("/", 3)
            seen = state.attempts.get(key, 0)
            state.attempts[key] = seen + 1
            if seen < int(failures):
                self.reply(503, "text/plain", b"busy")
            else:
                self.reply(200, "text/plain", b"fine")
        elif route.startswith("/charset/"):
            charset = route.rsplit("/", 1)[1]
            self.reply(200, f"text/plain; charset={charset}", FORM_WITH_TOKEN.encode("ascii"))
        elif route == "/hang-in-body":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            state.in_body.set()
            state.release.wait(10)
            self.close_connection = True
        else:
            self.reply(404, "text/plain", b"no route")

    do_POST = do_PUT = do_GET

    def digest(self) -> None:
        if self.headers.get("Authorization", "").startswith("Digest "):
            self.reply(200, "application/json", b'{"ok": true}')
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", DIGEST_CHALLENGE)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def response_headers(content_type: str, length: int) -> dict[str, str]:
    return {
        "Server": "test-server",
        "Date": FIXED_DATE,
        "Content-Type": content_type,
        "Content-Length": str(length),
    }
