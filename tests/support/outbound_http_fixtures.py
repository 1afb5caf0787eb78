"""Fixtures for :mod:`tests.support.outbound_http` (``pytest_plugins``): the server, per module and test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

import pytest

from tests.support.outbound_http import Handler, OutboundServer


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


@pytest.fixture(scope="module")
def outbound_server() -> Iterator[OutboundServer]:
    with serving(Handler) as state:
        yield state


@pytest.fixture
def server(outbound_server: OutboundServer) -> OutboundServer:
    """The module's server, with what it received and its events cleared."""
    outbound_server.received.clear()
    outbound_server.in_body.clear()
    outbound_server.release.clear()
    return outbound_server
