"""What request auditing costs a Django request: ``python benchmarks/requests.py``.

Two requests through Django's full WSGI handler and the middleware stack of ``startproject``:

- POST: a JSON body that creates one ``Author`` row;
- GET: a JSON list of 20 ``Author`` rows.

Three configurations, interleaved round by round in one process so that they share the machine's state:

``off``
    no audit middleware, the audit pipeline disabled (no CRUD records either).
``activity_audit``
    ``AuditLoggingMiddleware`` with bodies on (defaults), CRUD capture of ``Author``, the built-in redactor
    and the JSON-lines file sink writing on the worker thread (its work is included: it shares the process).
``django-auditlog``
    ``auditlog.middleware.AuditlogMiddleware`` with ``Author`` registered (a ``LogEntry`` row per create).

Each round sends ``--requests`` requests per configuration; the table gives, as medians over the rounds, the
wall time per request and the CPU time per request of the whole process (audit worker and sink threads
included, so work moved off the request thread still counts), each with its ratio to ``off``. On a machine
shared with other work the CPU column is the steadier of the two.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Each configuration: the middleware put before, and after, the startproject stack (each where its
# documentation puts it: ours first, django-auditlog's after authentication).
CONFIGURATIONS: dict[str, tuple[list[str], list[str]]] = {
    "off": ([], []),
    "activity_audit": (["activity_audit.middleware.AuditLoggingMiddleware"], []),
    "django-auditlog": ([], ["auditlog.middleware.AuditlogMiddleware"]),
}


def configure_django(log_dir: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF="tests.request_urls",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "activity_audit",
            "auditlog",
            "tests.testapp",
        ],
        MIDDLEWARE=BASE_MIDDLEWARE,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ACTIVITY_AUDIT={"LOG_DIR": log_dir, "SERVICE_NAME": "bench", "HANDLE_SIGTERM": False},
    )
    django.setup()


def build_handler(first: list[str], last: list[str]) -> Any:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=first + BASE_MIDDLEWARE + last):
        return WSGIHandler()


def environ(method: str, path: str, body: bytes = b"", content_type: str = "") -> dict[str, Any]:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench.local",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "bench.local",
        "HTTP_USER_AGENT": "benchmark/1.0",
        "HTTP_ACCEPT": "application/json",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        env["CONTENT_TYPE"] = content_type
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def call(handler: Any, env: dict[str, Any], expected_status: str) -> None:
    statuses: list[str] = []
    result = handler(env, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        for _ in result:
            pass
    finally:
        result.close()
    if not statuses[0].startswith(expected_status):
        raise SystemExit(f"unexpected status {statuses[0]}")


def post(handler: Any, index: int) -> None:
    body = json.dumps({"name": f"Author {index}"}).encode()
    call(handler, environ("POST", "/authors/", body, "application/json"), "201")


def get(handler: Any, index: int) -> None:
    call(handler, environ("GET", "/authors/"), "200")


@contextmanager
def auditing(name: str) -> Iterator[None]:
    """Switch the audit libraries on for ``name`` only."""
    from auditlog.context import disable_auditlog

    from activity_audit.dispatch import pipeline

    pipeline.enabled = name == "activity_audit"
    guard: AbstractContextManager[Any] = disable_auditlog() if name != "django-auditlog" else nullcontext()
    try:
        with guard:
            yield
    finally:
        pipeline.enabled = True


def measure(
    handlers: dict[str, Any], request: Callable[[Any, int], None], rounds: int, per_round: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per configuration and round: wall time per request, and CPU time per request of the whole process.

    The CPU time includes the audit worker and sink threads finishing that round's records (the flush).
    """
    from activity_audit.dispatch import pipeline

    wall: dict[str, list[float]] = {name: [] for name in handlers}
    cpu: dict[str, list[float]] = {name: [] for name in handlers}
    counter = 0
    for round_number in range(rounds):
        order = list(handlers)
        if round_number % 2:
            order.reverse()
        for name in order:
            with auditing(name):
                cpu_start = time.process_time()
                start = time.perf_counter()
                for _ in range(per_round):
                    counter += 1
                    request(handlers[name], counter)
                elapsed = time.perf_counter() - start
            pipeline.flush(30.0)  # each round starts with an empty queue
            cpu[name].append((time.process_time() - cpu_start) / per_round)
            wall[name].append(elapsed / per_round)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--requests", type=int, default=200, help="requests per configuration and round")
    args = parser.parse_args()

    log_dir = tempfile.mkdtemp(prefix="bench-requests-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "")
    configure_django(log_dir)

    from auditlog.registry import auditlog
    from django.core.management import call_command

    from tests.testapp.models import Author

    call_command("migrate", run_syncdb=True, verbosity=0)
    auditlog.register(Author)
    with auditing("off"):
        Author.objects.bulk_create(Author(name=f"Seed {index}") for index in range(20))

    handlers = {name: build_handler(*extra) for name, extra in CONFIGURATIONS.items()}
    for name, handler in handlers.items():  # warm-up: imports, URL resolver, first queries
        with auditing(name):
            for index in range(50):
                post(handler, -index)
                get(handler, index)

    print(f"{args.rounds} rounds x {args.requests} requests per configuration, interleaved")
    print("wall: request-thread time; cpu: CPU time of the whole process per request, audit worker included")
    columns = f"{'wall µs':>9} {'wall ratio':>11} {'cpu µs':>9} {'cpu ratio':>10}"
    print(f"{'request':<8} {'configuration':<16} {columns}")
    for label, request in (("POST", post), ("GET", get)):
        wall, cpu = measure(handlers, request, args.rounds, args.requests)
        wall_base, cpu_base = statistics.median(wall["off"]), statistics.median(cpu["off"])
        for name in handlers:
            wall_median, cpu_median = statistics.median(wall[name]), statistics.median(cpu[name])
            print(
                f"{label:<8} {name:<16} {wall_median * 1e6:>9.1f} {wall_median / wall_base:>10.3f}x"
                f" {cpu_median * 1e6:>9.1f} {cpu_median / cpu_base:>9.3f}x"
            )
    api_log = Path(log_dir) / "api.log"
    written = len(api_log.read_bytes().splitlines()) if api_log.exists() else 0
    print(f"api.log lines written: {written} (LOG_DIR {log_dir})")


if __name__ == "__main__":
    main()
