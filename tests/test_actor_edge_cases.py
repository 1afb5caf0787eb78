"""Who acted, at the edges: response headers, streamed content, threads, generators, re-exported commands."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import io
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core import management
from django.core.cache import cache
from django.core.management.base import BaseCommand
from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path

from activity_audit.context import AuditContext, audit_context, current, process_source
from activity_audit.middleware import AuditLoggingMiddleware
from tests.testapp.models import Author

pytestmark = pytest.mark.django_db(transaction=True)

WITHOUT_AUDIT = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
WITH_AUDIT = [*WITHOUT_AUDIT, "activity_audit.middleware.AuditLoggingMiddleware"]
SYSTEM = f"system:{process_source()}"


# -- views: every way a view can order its save and its look at the user, sync and async


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("static")


def saves(request: HttpRequest) -> HttpResponse:
    Author.objects.create(name="saved")
    return HttpResponse("static")


def reads(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"Hello {request.user.get_username()}")


def reads_then_saves(request: HttpRequest) -> HttpResponse:
    name = request.user.get_username()
    Author.objects.create(name="saved")
    return HttpResponse(f"Hello {name}")


def saves_then_reads(request: HttpRequest) -> HttpResponse:
    Author.objects.create(name="saved")
    return HttpResponse(f"Hello {request.user.get_username()}")


async def aplain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("static")


async def asaves(request: HttpRequest) -> HttpResponse:
    await Author.objects.acreate(name="saved")
    return HttpResponse("static")


async def username(request: HttpRequest) -> str:
    """The user's name as an async view reads it: ``request.auser()`` (Django 5.0+), else in a thread."""
    if hasattr(request, "auser"):
        user = await request.auser()
        return str(user.get_username())
    return await sync_to_async(lambda: str(request.user.get_username()))()


async def areads(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"Hello {await username(request)}")


async def areads_then_saves(request: HttpRequest) -> HttpResponse:
    name = await username(request)
    await Author.objects.acreate(name="saved")
    return HttpResponse(f"Hello {name}")


async def asaves_then_reads(request: HttpRequest) -> HttpResponse:
    await Author.objects.acreate(name="saved")
    return HttpResponse(f"Hello {await username(request)}")


# view name -> (does the view read the user, does it save)
VIEWS = {
    "plain": (False, False),
    "saves": (False, True),
    "reads": (True, False),
    "reads_then_saves": (True, True),
    "saves_then_reads": (True, True),
}


# -- views that stream, start threads

# What the streaming views' generators saw, for the tests to look at.
SEEN: list[Any] = []


def streams_and_saves(request: HttpRequest) -> StreamingHttpResponse:
    def content():
        try:
            yield b"one;"
            Author.objects.create(name="while streaming")
            SEEN.append(current())
            yield b"two"
        finally:
            Author.objects.create(name="after the stream")

    return StreamingHttpResponse(content())


def streams_with_its_own_block(request: HttpRequest) -> StreamingHttpResponse:
    def content():
        with audit_context(actor="system:exporter"):
            yield b"one;"
            Author.objects.create(name="inside the block")
        yield b"two"
        Author.objects.create(name="after the block")

    return StreamingHttpResponse(content())


async def astreams_and_saves(request: HttpRequest) -> StreamingHttpResponse:
    async def content():
        yield b"one;"
        await Author.objects.acreate(name="while streaming")
        await asyncio.sleep(0)
        SEEN.append(current())
        yield b"two"

    return StreamingHttpResponse(content())


def saves_in_a_pool(request: HttpRequest) -> HttpResponse:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(Author.objects.create, name="pool, bare").result()
        pool.submit(
            contextvars.copy_context().run, Author.objects.create, name="pool, copied context"
        ).result()
    return HttpResponse("ok")


def saves_in_a_thread(request: HttpRequest) -> HttpResponse:
    def bare() -> None:
        Author.objects.create(name="thread, bare")

    def told() -> None:
        with audit_context(actor="system:mailer"):
            Author.objects.create(name="thread, audit_context")

    for target in (bare, told):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join(10)
    return HttpResponse("ok")


urlpatterns = [
    *(path(f"{name}/", globals()[name]) for name in VIEWS),
    *(path(f"a{name}/", globals()[f"a{name}"]) for name in VIEWS),
    path("stream/", streams_and_saves),
    path("stream-block/", streams_with_its_own_block),
    path("astream/", astreams_and_saves),
    path("pool/", saves_in_a_pool),
    path("thread/", saves_in_a_thread),
]


# -- helpers


def client_for(kind: str, session: str) -> tuple[Client | AsyncClient, User]:
    """A client that sends no cookie, an anonymous session's cookie, or a logged-in user's."""
    client: Client | AsyncClient = Client() if kind == "wsgi" else AsyncClient()
    user = User.objects.create_user("alice")
    if session == "anonymous session":
        store = SessionStore()
        store["cart"] = ["book-1"]
        store.save()
        client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    elif session == "logged in":
        client.force_login(user)
    return client, user


def get(client: Client | AsyncClient, url: str, **headers: str) -> HttpResponse:
    if isinstance(client, AsyncClient):

        async def fetch() -> HttpResponse:
            return await client.get(url, headers=headers)

        return async_to_sync(fetch)()
    return client.get(url, headers=headers)


def what_caches_see(response: HttpResponse) -> tuple[int, str | None, list[str], bytes]:
    """The parts of a response that decide what a cache keeps and serves to whom."""
    return response.status_code, response.headers.get("Vary"), sorted(response.cookies), response.content


def by_name(audit_records: Any) -> dict[str, tuple[str, str | None]]:
    records = audit_records.of("audit.crud", model="Author")
    return {record["changes"]["name"]["new"]: (record["actor"], record["request_id"]) for record in records}


# -- 1, 2: the audit changes no response header


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize("session", ["no cookie", "anonymous session", "logged in"])
@pytest.mark.parametrize("sync_view", [True, False], ids=["sync view", "async view"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_the_audit_changes_no_header_of_the_response(audit_records, kind, session, sync_view, view):
    reads_user, saves_a_row = VIEWS[view]
    url = f"/{view}/" if sync_view else f"/a{view}/"
    seen = {}
    for middleware in (WITHOUT_AUDIT, WITH_AUDIT):
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware):
            client, user = client_for(kind, session)
            audit_records.clear()
            seen[len(middleware)] = what_caches_see(get(client, url))
            User.objects.all().delete()

    without, with_audit = seen[len(WITHOUT_AUDIT)], seen[len(WITH_AUDIT)]
    assert with_audit == without
    # Django marks the session accessed when, and only when, the view looked at the user.
    assert with_audit[1] == ("Cookie" if reads_user else None)
    assert with_audit[2] == []  # no session cookie set or deleted
    expected = f"user:{user.pk}" if session == "logged in" else "anonymous"
    [request_record] = audit_records.of("audit.request")
    assert request_record["actor"] == expected
    assert [actor for actor, _ in by_name(audit_records).values()] == ([expected] if saves_a_row else [])


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITH_AUDIT)
@pytest.mark.parametrize("view", ["saves_then_reads", "reads_then_saves"])
def test_the_user_is_loaded_once_whoever_reads_it_first(audit_records, view):
    client, user = client_for("wsgi", "logged in")

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/{view}/")

    assert response.content == b"Hello alice"
    assert response.headers["Vary"] == "Cookie"
    from_users = f"FROM {connection.ops.quote_name('auth_user')}"
    assert len([query for query in queries if from_users in query["sql"]]) == 1
    [(actor, _)] = by_name(audit_records).values()
    assert actor == f"user:{user.pk}"


@pytest.mark.parametrize("middleware", [WITHOUT_AUDIT, WITH_AUDIT], ids=["without audit", "with audit"])
def test_a_shared_cache_never_serves_one_users_page_to_another(audit_records, middleware):
    cache.clear()
    stack = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *middleware,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=stack, CACHE_MIDDLEWARE_SECONDS=60):
        alice, bob = Client(), Client()
        alice.force_login(User.objects.create_user("alice"))
        bob.force_login(User.objects.create_user("bob"))

        pages = [client.get("/saves_then_reads/").content for client in (alice, bob)]

    assert pages == [b"Hello alice", b"Hello bob"]


# -- 3: what a streaming response's generator saves belongs to its request


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITH_AUDIT)
def test_saves_made_while_a_response_streams_carry_the_request(audit_records):
    client, user = client_for("wsgi", "logged in")
    SEEN.clear()
    audit_records.clear()

    response = client.get("/stream/", headers={"X-Request-ID": "req-stream"})
    between_chunks = []
    chunks = []
    for chunk in response.streaming_content:
        chunks.append(chunk)
        between_chunks.append(current())  # the consumer's own context, not the request's

    assert chunks == [b"one;", b"two"]
    assert between_chunks == [AuditContext(), AuditContext()]
    assert by_name(audit_records) == {
        "while streaming": (f"user:{user.pk}", "req-stream"),
        "after the stream": (f"user:{user.pk}", "req-stream"),
    }
    [inside] = SEEN
    assert (inside.request_id, inside.actor) == ("req-stream", None)
    assert current() == AuditContext()


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITH_AUDIT)
def test_closing_a_stream_early_closes_the_generator_inside_the_request(audit_records):
    client, user = client_for("wsgi", "logged in")
    audit_records.clear()

    response = client.get("/stream/", headers={"X-Request-ID": "req-closed"})
    chunks = iter(response.streaming_content)
    assert next(chunks) == b"one;"
    response.close()  # the client went away: the server closes the response

    assert by_name(audit_records) == {"after the stream": (f"user:{user.pk}", "req-closed")}
    assert current() == AuditContext()


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITH_AUDIT)
def test_a_block_the_stream_opens_across_a_yield_stays_its_own(audit_records):
    client, user = client_for("wsgi", "logged in")
    audit_records.clear()

    response = client.get("/stream-block/", headers={"X-Request-ID": "req-block"})
    chunks = []
    for chunk in response.streaming_content:
        chunks.append((chunk, current().actor))

    assert chunks == [(b"one;", None), (b"two", None)]
    assert by_name(audit_records) == {
        "inside the block": ("system:exporter", "req-block"),
        "after the block": (f"user:{user.pk}", "req-block"),
    }


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITH_AUDIT)
def test_saves_made_while_an_async_response_streams_carry_the_request(audit_records):
    client, user = client_for("asgi", "logged in")
    SEEN.clear()
    audit_records.clear()

    async def fetch() -> tuple[list[bytes], list[AuditContext]]:
        response = await client.get("/astream/", headers={"X-Request-ID": "req-astream"})
        chunks, between_chunks = [], []
        async for chunk in response.streaming_content:
            chunks.append(chunk)
            between_chunks.append(current())
        return chunks, between_chunks

    chunks, between_chunks = async_to_sync(fetch)()

    assert chunks == [b"one;", b"two"]
    assert between_chunks == [AuditContext(), AuditContext()]
    assert by_name(audit_records) == {"while streaming": (f"user:{user.pk}", "req-astream")}
    [inside] = SEEN
    assert inside.request_id == "req-astream"


def test_closing_an_async_stream_closes_its_generator_inside_the_request():
    closed_in: list[str | None] = []

    async def content():
        try:
            yield b"one;"
            yield b"two"
        finally:
            closed_in.append(current().request_id)

    async def view(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(content())

    async def main() -> bytes:
        request = RequestFactory().get("/astream/", headers={"X-Request-ID": "req-aclose"})
        response = await AuditLoggingMiddleware(view)(request)
        # The iterator the response sends from (the middleware's wrapper), closed as a server closes it
        # when the client goes away. (Left to the event loop's shutdown instead, the loop may close the
        # view's generator first, directly, in whatever context it runs.)
        stream = response._iterator
        first = await anext(stream)
        await stream.aclose()
        return first

    assert asyncio.run(main()) == b"one;"
    assert closed_in == ["req-aclose"]


def test_a_file_response_keeps_its_file_for_sendfile():
    data = io.BytesIO(b"x" * 10_000)
    request = RequestFactory().get("/file/")

    response = AuditLoggingMiddleware(lambda request: FileResponse(data))(request)

    assert response.file_to_stream is data  # what wsgi.file_wrapper sends
    assert b"".join(response) == b"x" * 10_000
    response.close()
    assert data.closed


# -- 4: threads start with no context; what carries it


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITH_AUDIT)
@pytest.mark.parametrize("url", ["/pool/", "/thread/"])
def test_a_thread_started_by_a_view_has_no_request_unless_given_one(audit_records, url):
    client, user = client_for("wsgi", "logged in")
    audit_records.clear()

    client.get(url, headers={"X-Request-ID": "req-threads"})

    if url == "/pool/":
        assert by_name(audit_records) == {
            "pool, bare": (SYSTEM, None),
            "pool, copied context": (f"user:{user.pk}", "req-threads"),
        }
    else:
        assert by_name(audit_records) == {
            "thread, bare": (SYSTEM, None),
            "thread, audit_context": ("system:mailer", None),
        }


# -- 5: audit_context on generator functions


def test_a_decorated_generator_runs_every_step_inside_the_context():
    @audit_context(actor="system:export", source="export")
    def rows(count: int):
        """Yields the actor it sees at each step."""
        received = []
        for _ in range(count):
            received.append((yield current().actor))
        return received

    assert inspect.isgeneratorfunction(rows)
    assert (rows.__name__, rows.__doc__) == ("rows", "Yields the actor it sees at each step.")
    generator = rows(2)
    seen = [next(generator)]
    between = current()
    seen.append(generator.send("first"))
    with pytest.raises(StopIteration) as stop:
        generator.send("second")
    assert seen == ["system:export", "system:export"]
    assert between == AuditContext()
    assert stop.value.value == ["first", "second"]
    assert current() == AuditContext()


def test_a_decorated_generator_takes_its_context_where_it_starts():
    @audit_context(actor="system:export")
    def steps():
        yield current().source
        yield current().source

    generator = steps()  # made outside, started inside: the body starts there
    with audit_context(source="nightly"):
        first = next(generator)
    with audit_context(source="other"):
        second = next(generator)  # its context is its own from the first step on

    assert (first, second) == ("nightly", "nightly")


def test_a_decorated_generator_is_thrown_into_and_closed_inside_the_context():
    seen: list[tuple[str, Any]] = []

    @audit_context(actor="system:worker")
    def worker():
        while True:
            try:
                yield
            except ValueError:
                seen.append(("caught", current().actor))
            finally:
                if sys.exc_info()[0] is GeneratorExit:
                    seen.append(("closed", current().actor))

    generator = worker()
    next(generator)
    generator.throw(ValueError("retry"))
    generator.close()

    assert seen == [("caught", "system:worker"), ("closed", "system:worker")]
    assert current() == AuditContext()


def test_a_block_inside_a_decorated_generator_spans_its_yields():
    @audit_context(actor="system:outer")
    def steps():
        with audit_context(actor="system:inner"):
            yield current().actor
            yield current().actor
        yield current().actor

    seen = []
    for actor in steps():
        seen.append((actor, current().actor))

    assert seen == [("system:inner", None), ("system:inner", None), ("system:outer", None)]


def test_a_block_inside_a_decorated_generator_closes_in_a_step_run_in_another_context():
    """Each step run in a Context of its own (as ``asyncio.wait_for`` runs a step on Python 3.10 and 3.11, or
    ``sync_to_async(next)``): the block opened in the first step still closes in the third."""

    @audit_context(actor="system:outer")
    def steps():
        with audit_context(actor="system:inner"):
            yield current().actor
            yield current().actor
        yield current().actor

    generator = steps()
    seen = [contextvars.copy_context().run(next, generator) for _ in range(3)]

    assert seen == ["system:inner", "system:inner", "system:outer"]
    assert current() == AuditContext()


def test_a_block_inside_a_decorated_async_generator_closes_in_a_step_awaited_through_a_task():
    @audit_context(actor="system:outer")
    async def steps():
        with audit_context(actor="system:inner"):
            yield current().actor
            yield current().actor
        yield current().actor

    async def consume():
        generator = steps()
        return [await asyncio.create_task(generator.__anext__()) for _ in range(3)]

    assert asyncio.run(consume()) == ["system:inner", "system:inner", "system:outer"]


def test_the_decorator_on_a_sync_to_async_callable_holds_while_it_runs():
    """asgiref's callables are coroutine functions by asgiref's test, not by ``inspect``'s on Python 3.11."""
    from asgiref.sync import sync_to_async

    read_actor = audit_context(actor="system:consumer")(sync_to_async(lambda: current().actor))

    assert asyncio.run(read_actor()) == "system:consumer"
    assert current() == AuditContext()


def test_a_decorated_async_generator_runs_every_step_inside_the_context():
    @audit_context(actor="system:feed")
    async def feed():
        received = yield current().actor
        await asyncio.sleep(0)
        task_saw = await asyncio.create_task(_actor_now())  # a task started by the body inherits it
        try:
            yield (received, current().actor, task_saw)
        except KeyError:
            yield ("thrown", current().actor)
        finally:
            closed.append(current().actor)

    closed: list[Any] = []

    async def main() -> list[Any]:
        generator = feed()
        seen = [await generator.asend(None), current()]
        seen.append(await generator.asend("hello"))
        seen.append(await generator.athrow(KeyError("x")))
        await generator.aclose()
        seen.append(current())
        return seen

    assert inspect.isasyncgenfunction(feed)
    assert asyncio.run(main()) == [
        "system:feed",
        AuditContext(),
        ("hello", "system:feed", "system:feed"),
        ("thrown", "system:feed"),
        AuditContext(),
    ]
    assert closed == ["system:feed"]


async def _actor_now() -> Any:
    return current().actor


def test_concurrent_tasks_iterating_one_decorated_function_keep_their_own_contexts():
    @audit_context(source="feed")
    async def feed(gate: asyncio.Event):
        yield current().actor, current().source
        await gate.wait()
        yield current().actor, current().source

    async def consume(name: str, gate: asyncio.Event, other: asyncio.Event) -> list[Any]:
        with audit_context(actor=f"system:{name}"):
            seen = []
            async for actor in feed(gate):
                seen.append(actor)
                other.set()
            return seen

    async def main() -> list[list[Any]]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(consume("a", a, b), consume("b", b, a)))

    assert asyncio.run(main()) == [[("system:a", "feed")] * 2, [("system:b", "feed")] * 2]


# -- 6: a command is named by the name it was run under


class SharedCommand(BaseCommand):
    """A command class that two command modules (or one) import from elsewhere."""

    def handle(self, *args: Any, **options: Any) -> None:
        Author.objects.create(name=f"by {current().source}")


@pytest.fixture
def sync_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """``testapp/management/commands/sync_prices.py`` containing ``from elsewhere import Command``."""
    module = types.ModuleType("tests.testapp.management.commands.sync_prices")
    module.Command = SharedCommand  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    commands = {**management.get_commands(), "sync_prices": "tests.testapp"}
    monkeypatch.setattr(management, "get_commands", lambda: commands)


def test_a_command_whose_class_is_imported_is_named_as_it_was_run(audit_records, sync_prices):
    management.call_command("sync_prices")
    management.ManagementUtility(["manage.py", "sync_prices"]).fetch_command("sync_prices").run_from_argv(
        ["manage.py", "sync_prices"]
    )

    records = audit_records.of("audit.crud", model="Author")
    assert [(r["changes"]["name"]["new"], r["actor"]) for r in records] == [
        ("by sync_prices", "system:sync_prices"),
        ("by sync_prices", "system:sync_prices"),
    ]


def test_a_command_instance_passed_to_call_command_is_named_by_its_module(audit_records):
    management.call_command(SharedCommand())

    [record] = audit_records.of("audit.crud", model="Author")
    assert record["actor"] == "system:test_actor_edge_cases"
