"""A real HTTP server on loopback for the outbound-client tests.

The fixtures are in :mod:`tests.support.outbound_http_fixtures` (``pytest_plugins``); this module holds what
the tests import.

Routes (every response has ``Server: test-server`` and a fixed ``Date``, so records can be compared whole):

* ``/json``: 200, ``{"items": [1, 2]}``;
* ``/echo``: 201, the request's body with its ``Content-Type``;
* ``/status/<code>``: ``<code>``, ``status <code>`` as UTF-8 text;
* ``/large``: 200, 100,000 bytes of text; ``/binary``: 200, 1 KiB of PNG-labelled bytes;
* ``/slow``: waits for ``release`` (10 s at most), then 200 ``late``;
* ``/redirect``: 302 to ``/json``; ``/redirect-bad-gzip``: the same, its body declared gzip and not gzip;
* ``/bad-gzip``: 200 declared gzip, not gzip; ``/gzip-token`` and ``/br-token``: 200, the gzipped JSON
  :data:`GZIPPED_TOKEN` declared ``gzip`` or ``br`` (urllib3 without brotli hands ``br`` over as sent);
* ``/cut-off``: promises 100 bytes, sends 10, hangs up; ``/chunked``: two chunks of text;
* ``/digest``: 401 with a ``WWW-Authenticate: Digest`` challenge, or 200 ``{"ok": true}`` once the request
  carries a Digest ``Authorization`` header;
* ``/flaky/<n>/<key>``: 503 ``busy`` for the first ``n`` requests with that ``key``, then 200 ``fine``;
* ``/charset/<charset>``: 200, the ASCII bytes of :data:`FORM_WITH_TOKEN` labelled
  ``text/plain; charset=<charset>``;
* ``/hang-in-body``: 200 with ``Content-Length: 100``, sends 10 bytes, sets ``in_body`` and waits for
  ``release`` before sending the rest.

Every request is kept in ``received``, with its body.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIXED_DATE = "Sat, 28 Nov 2026 10:00:00 GMT"
TOKEN = "tok_live_5e4d3c2b1a09f8e7"
FORM_WITH_TOKEN = f"access_token={TOKEN}&x=1"
DIGEST_CHALLENGE = 'Digest realm="audit", nonce="6f8d4c1d9a51", qop="auth", algorithm=MD5'
NOT_GZIP = b"this is not gzip"
GZIPPED_TOKEN = gzip.compress(json.dumps({"access_token": TOKEN, "expires_in": 3600}).encode(), mtime=0)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


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
        body = self.rfile.read(length) if length else b""
        state.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
        route = self.path.split("?", 1)[0]
        if route == "/json":
            self.reply(200, "application/json", b'{"items": [1, 2]}')
        elif route == "/echo":
            self.reply(201, self.headers.get("Content-Type", "application/octet-stream"), body)
        elif route.startswith("/status/"):
            code = int(route.rsplit("/", 1)[1])
            self.reply(code, "text/plain; charset=utf-8", f"status {code}".encode())
        elif route == "/large":
            self.reply(200, "text/plain", b"a " * 50_000)
        elif route == "/binary":
            self.reply(200, "image/png", bytes(range(256)) * 4)
        elif route == "/slow":
            state.release.wait(10)
            self.reply(200, "text/plain", b"late")
        elif route in ("/redirect", "/redirect-bad-gzip"):
            self.redirect_to_json(bad_gzip=route == "/redirect-bad-gzip")
        elif route == "/bad-gzip":
            self.send_body(200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, NOT_GZIP)
        elif route in ("/gzip-token", "/br-token"):
            encoding = "gzip" if route == "/gzip-token" else "br"
            self.send_body(
                200, {"Content-Type": "application/json", "Content-Encoding": encoding}, GZIPPED_TOKEN
            )
        elif route == "/cut-off":
            self.send_part_then_wait(None)
        elif route == "/chunked":
            self.chunked((b"first ", b"second"))
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
            self.send_part_then_wait(state)
        else:
            self.reply(404, "text/plain", b"no route")

    do_POST = do_PUT = do_DELETE = do_GET

    def redirect_to_json(self, bad_gzip: bool) -> None:
        """302 to ``/json``; with ``bad_gzip``, a body declared gzip that is not (requests ignores a redirect
        hop's body)."""
        self.send_response(302)
        self.send_header("Location", "/json")
        if bad_gzip:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(NOT_GZIP)))
            self.end_headers()
            self.wfile.write(NOT_GZIP)
        else:
            self.send_header("Content-Length", "0")
            self.end_headers()

    def send_part_then_wait(self, state: OutboundServer | None) -> None:
        """200 promising 100 bytes, 10 of them sent; then hang up (no ``state``), or set ``state.in_body``
        and wait for ``state.release`` first."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        if state is not None:
            state.in_body.set()
            state.release.wait(10)
        self.close_connection = True

    def chunked(self, pieces: tuple[bytes, ...]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def digest(self) -> None:
        if self.headers.get("Authorization", "").startswith("Digest "):
            self.reply(200, "application/json", b'{"ok": true}')
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", DIGEST_CHALLENGE)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_body(status, {"Content-Type": content_type}, body)

    def send_body(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
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


@contextmanager
def serving(handler: type[Handler]) -> Iterator[OutboundServer]:
    """A server on a free loopback port answering with ``handler``, for the ``with`` block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state = OutboundServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
