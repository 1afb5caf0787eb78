"""As :mod:`tests.proc.sigterm_in_drain_sink`, with SIGINT (Ctrl-C) sent during the exit drain."""

import signal

from activity_audit import hookimpl
from tests.proc.sigterm_in_drain_sink import signalling_sink

sink = hookimpl(signalling_sink(signal.SIGINT))
