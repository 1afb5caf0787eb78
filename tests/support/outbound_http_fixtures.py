"""Fixtures for :mod:`tests.support.outbound_http` (``pytest_plugins``): the server, per module and test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.outbound_http import Handler, OutboundServer, serving


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
