"""Drain the pipeline in a uvicorn server process before uvicorn's re-raised SIGTERM ends it.

While ``uvicorn.Server.serve`` runs, uvicorn holds SIGINT and SIGTERM with its own handler
(``Server.capture_signals``): a signal asks for a graceful stop, which waits for the requests under way. Once
stopped, uvicorn puts back the handlers it found and raises the signal again, so that it has the effect it
would have had without uvicorn.

A worker of ``uvicorn --workers N`` (and the server process of ``--reload``) imports the application, and so
starts this package, only inside ``serve``: SIGTERM is uvicorn's then, and the package's SIGTERM handler is
not installed (a server that handles SIGTERM keeps its handler). The handler uvicorn puts back is SIGTERM's
default action, and the re-raised signal makes the kernel end the worker on the spot: ``atexit`` never runs,
and what the worker still had queued, records of requests it has answered, would be lost.

So when the package starts while a uvicorn ``Server`` holds SIGTERM, that server's ``shutdown`` is wrapped:
when it has finished (every request answered, the application's lifespan shutdown done) and the server
stopped on SIGTERM, the pipeline is drained, on the server's thread, before uvicorn re-raises the signal.
Nothing else changes: the signal still ends the process as before. A single uvicorn process (no
``--workers``, no ``--reload``) imports the application before it serves: the package's SIGTERM handler is
installed then (``HANDLE_SIGTERM``), and it is what uvicorn puts back and re-raises the signal to; nothing is
wrapped there.

A process that loads the application inside ``serve`` is taken to end on the SIGTERM uvicorn re-raises, as a
uvicorn worker does. A SIGINT alone is not acted on: in such a process, it ends through
``KeyboardInterrupt``, and ``atexit`` drains the pipeline. No signal handler is touched, so this does not
depend on ``HANDLE_SIGTERM``. uvicorn before 0.29 neither held the signals this way nor raised them again:
its workers end through ``sys.exit``, and nothing here applies.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from .reporting import write_stderr

_SERVER_MODULE = "uvicorn.server"


def drain_when_uvicorn_stops(drain: Callable[[], object]) -> bool:
    """If a uvicorn ``Server`` holds SIGTERM, have it call ``drain()`` once it has stopped on SIGTERM.

    See the module docstring. Returns True when the server's ``shutdown`` is wrapped (or already was). Does
    nothing, and imports nothing, where uvicorn is not imported; never raises.
    """
    try:
        server = _server_holding_sigterm()
        if server is None:
            return False
        if not isinstance(server.shutdown, _DrainingShutdown):  # start() runs again on settings reloads
            server.shutdown = _DrainingShutdown(server, server.shutdown, drain)
        return True
    except Exception as exc:  # a uvicorn unlike the one this was written for: serve as it would
        write_stderr(f"could not arrange the drain at uvicorn's stop: {exc!r}")
        return False


def _server_holding_sigterm() -> Any:
    """The ``uvicorn.server.Server`` whose bound method is SIGTERM's handler, or None."""
    module = sys.modules.get(_SERVER_MODULE)
    server_class = getattr(module, "Server", None)
    if not isinstance(server_class, type):
        return None
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if isinstance(owner, server_class) else None


class _DrainingShutdown:
    """``Server.shutdown`` of one server, followed by ``drain()`` when the server stopped on SIGTERM."""

    def __init__(self, server: Any, shutdown: Callable[..., Any], drain: Callable[[], object]) -> None:
        self._server = server
        self._shutdown = shutdown
        self._drain = drain

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        await self._shutdown(*args, **kwargs)
        if signal.SIGTERM in getattr(self._server, "_captured_signals", ()):
            self._drain_safely()

    def _drain_safely(self) -> None:
        # On the event loop's thread, blocking it: the server has stopped, nothing else is left to run on it,
        # and the drain is bounded by SHUTDOWN_TIMEOUT. A signal meanwhile only reaches uvicorn's handler.
        try:
            self._drain()
        except Exception as exc:
            write_stderr(f"draining at uvicorn's stop failed: {exc!r}")
