"""A sink that, once the pipeline has begun its exit drain, sends a signal (SIGTERM here) to its own process
(once) and then takes its time over each batch, so the signal is handled while the drain still has records
to deliver."""

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence

from activity_audit import hookimpl
from activity_audit.dispatch import pipeline
from activity_audit.records import Entry


def signalling_sink(signum: int) -> Callable[[Sequence[Entry]], None]:
    sent = threading.Event()

    def sink(records: Sequence[Entry]) -> None:
        if pipeline.shutting_down and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signum)
        if sent.is_set():
            time.sleep(0.02)

    return sink


sink = hookimpl(signalling_sink(signal.SIGTERM))
