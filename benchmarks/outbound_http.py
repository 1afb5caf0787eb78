"""Outbound HTTP capture cost: a JSON POST and a GET through plain ``requests.Session`` and through
``HTTPClient``, against a loopback HTTP/1.1 server, interleaved in one run.

    python benchmarks/outbound_http.py                  # defaults: 15 rounds of 300 calls per variant
    python benchmarks/outbound_http.py --rounds 9 --calls 200

In every round the two variants run in a shuffled order on kept-alive connections. The table shows the median
time per call over the rounds and the ratio to "plain". "audited" is the time on the caller thread (what the
caller pays); the pipeline's work after it (redaction, encoding, writing ``api.log``) is timed apart as
"write, per call" with ``flush()``. At the end ``api.log`` must hold one record per audited call.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = {"customer": "C-1042", "lines": [{"sku": f"SKU-{n}", "qty": n, "price": "12.50"} for n in range(5)]}
LIST_BODY = b'{"items": [' + b",".join(b'{"id": %d, "name": "item %d"}' % (n, n) for n in range(20)) + b"]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every kept-alive call

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.reply(200, LIST_BODY)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(201, b'{"id": 1}')

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def per_call(calls: int, action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - started) / calls


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    log_dir = tempfile.mkdtemp(prefix="bench-outbound-")
    os.environ["AUDIT_TEST_LOG_DIR"] = log_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    # This directory holds a ``requests.py`` benchmark that would shadow the library.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import requests

    from activity_audit import flush
    from activity_audit.clients.http import HTTPClient

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    sessions = {"plain": requests.Session(), "audited": HTTPClient("bench")}
    operations: dict[str, Callable[[requests.Session], Any]] = {
        "POST json": lambda s: s.post(f"{base}/orders", json=PAYLOAD),
        "GET list": lambda s: s.get(f"{base}/items", params={"page": "1"}),
    }
    timings: dict[tuple[str, str], list[float]] = {(op, v): [] for op in operations for v in sessions}
    writes: list[float] = []
    for session in sessions.values():  # warm up connections and code paths
        for operation in operations.values():
            per_call(20, lambda op=operation, s=session: op(s))
    flush(30)

    for _round in range(args.rounds):
        for op_name, operation in operations.items():
            order = list(sessions)
            random.shuffle(order)
            for variant in order:
                session = sessions[variant]
                timings[(op_name, variant)].append(
                    per_call(args.calls, lambda s=session, op=operation: op(s))
                )
                if variant == "audited":
                    started = time.perf_counter()
                    flush(60)
                    writes.append((time.perf_counter() - started) / args.calls)

    print(f"{args.rounds} rounds x {args.calls} calls per variant; median microseconds per call\n")
    print(f"{'operation':<12}{'plain':>10}{'audited':>10}{'ratio':>8}")
    for op_name in operations:
        plain = statistics.median(timings[(op_name, "plain")]) * 1e6
        audited = statistics.median(timings[(op_name, "audited")]) * 1e6
        print(f"{op_name:<12}{plain:>10.1f}{audited:>10.1f}{audited / plain:>8.3f}")
    print(f"\nwrite, per call (pipeline, after the calls): {statistics.median(writes) * 1e6:.1f} us")

    flush(60)
    lines = (Path(log_dir) / "api.log").read_bytes().count(b"\n")
    expected = args.rounds * args.calls * len(operations) + 20 * len(operations)
    print(f"api.log records: {lines} (expected {expected})")
    return 0 if lines == expected else 1


if __name__ == "__main__":
    sys.exit(main())
