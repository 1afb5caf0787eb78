"""Who made a change, read at the moment of the change: request users, DRF-style views, threads, async,
audit_context, management commands, anonymous."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.core.management import call_command
from django.db import connections
from django.test import Client, RequestFactory, override_settings

from activity_audit.context import audit_context, current, request_scope
from tests.conftest import read_lines
from tests.crud_helpers import crud, system_actor

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parent.parent
WITH_MIDDLEWARE = override_settings(
    ROOT_URLCONF="tests.crud_views",
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "activity_audit.middleware.AuditLoggingMiddleware",
    ],
)


def who(records):
    return [
        (r["changes"].get("name", {}).get("new"), r["actor"], r["user"], r["request_id"]) for r in records
    ]


@pytest.fixture
def alice():
    return User.objects.create_user("alice")


@pytest.fixture
def bob():
    return User.objects.create_user("bob")


@WITH_MIDDLEWARE
def test_the_request_user_and_request_id_of_a_real_request(audit_records, alice):
    client = Client()
    client.force_login(alice)
    audit_records.clear()

    response = client.get("/authors/create/", {"name": "Le Guin"}, headers={"X-Request-ID": "req-42"})

    assert response.status_code == 200
    (created,) = crud(audit_records, model="Author")
    assert (created["actor"], created["user"], created["request_id"]) == (
        f"user:{alice.pk}",
        {"id": alice.pk, "username": "alice"},
        "req-42",
    )


@WITH_MIDDLEWARE
def test_a_user_authenticated_inside_the_view_is_the_actor(audit_records, alice):
    audit_records.clear()
    Client().get("/authors/token-create/", {"name": "Token"}, headers={"Authorization": "Token alice"})
    Client().get("/authors/token-create/", {"name": "Nobody"})

    assert [(r[0], r[1]) for r in who(crud(audit_records, model="Author"))] == [
        ("Token", f"user:{alice.pk}"),
        ("Nobody", "anonymous"),
    ]


@WITH_MIDDLEWARE
def test_async_orm_in_an_async_view_keeps_the_actor(audit_records, alice):
    client = Client()
    client.force_login(alice)
    audit_records.clear()

    client.get("/authors/async/", {"name": "Async"}, headers={"X-Request-ID": "req-async"})

    records = crud(audit_records, model="Author")
    assert [r["event_type"] for r in records] == ["CREATE", "UPDATE", "QUERYSET_UPDATE", "DELETE"]
    assert {(r["actor"], r["request_id"]) for r in records} == {(f"user:{alice.pk}", "req-async")}
    assert records[1]["changes"] == {"name": {"old": "Async", "new": "Async (edited)"}}


def test_concurrent_requests_in_threads_never_mix_their_users(audit_records, alice, bob):
    from tests.testapp.models import Author

    users = [alice, bob, AnonymousUser()] * 3
    start = threading.Barrier(len(users))
    database = threading.Lock()  # SQLite shared-cache memory databases lock tables: serialise the writes only
    leftovers = []

    def serve(index, user):
        request = RequestFactory().get("/")
        request.user = user
        try:
            with request_scope(request, f"req-{index}"):
                start.wait(timeout=10)
                for round_ in range(3):
                    with database:
                        Author.objects.create(name=f"{index}:{round_}")
            leftovers.append(current())
        finally:
            connections.close_all()  # this thread's own connections

    threads = [threading.Thread(target=serve, args=(i, user)) for i, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    records = crud(audit_records, model="Author")
    assert sorted(r["changes"]["name"]["new"] for r in records) == sorted(
        f"{index}:{round_}" for index in range(len(users)) for round_ in range(3)
    )
    for record in records:
        index = int(record["changes"]["name"]["new"].split(":")[0])
        user = users[index]
        expected = f"user:{user.pk}" if user.is_authenticated else "anonymous"
        assert (record["actor"], record["request_id"]) == (expected, f"req-{index}")
    assert all(context.request is None and context.request_id is None for context in leftovers)


def test_concurrent_async_tasks_and_sync_to_async_never_mix_their_users(audit_records, alice, bob):
    from tests.testapp.models import Author

    async def serve(index, user):
        request = RequestFactory().get("/")
        request.user = user
        with request_scope(request, f"req-{index}"):
            author = await Author.objects.acreate(name=f"{index}")
            await asyncio.sleep(0)
            await sync_to_async(Author.objects.filter(pk=author.pk).update)(name=f"{index}:s2a")
            await asyncio.sleep(0)
            await author.adelete()

    async def main():
        await asyncio.gather(*(serve(i, user) for i, user in enumerate([alice, bob, alice, bob])))

    async_to_sync(main)()

    records = crud(audit_records, model="Author")
    assert sorted((r["request_id"], r["event_type"]) for r in records) == sorted(
        (f"req-{index}", event_type)
        for index in range(4)
        for event_type in ("CREATE", "QUERYSET_UPDATE", "DELETE")
    )
    for record in records:
        index = int(record["request_id"].removeprefix("req-"))
        assert record["actor"] == f"user:{[alice, bob][index % 2].pk}"
    assert current().request is None


def test_audit_context_outside_requests(audit_records, alice):
    from tests.testapp.models import Author

    with audit_context(actor=alice):
        Author.objects.create(name="as alice")
    with audit_context(actor="system:nightly-import", request_id="job-7"):
        Author.objects.create(name="as job")
    Author.objects.create(name="as nobody")

    assert who(crud(audit_records, model="Author")) == [
        ("as alice", f"user:{alice.pk}", {"id": alice.pk, "username": "alice"}, None),
        ("as job", "system:nightly-import", None, "job-7"),
        ("as nobody", system_actor(), None, None),
    ]


def test_user_fields_setting_shapes_the_user(audit_records, alice):
    from tests.crud_helpers import audit_settings
    from tests.testapp.models import Author

    with audit_settings(USER_FIELDS=["id"]), audit_context(actor=alice):
        Author.objects.create(name="short user")
        (only,) = crud(audit_records, model="Author")
    assert only["user"] == {"id": alice.pk}


def test_a_management_command_is_the_actor_of_its_changes(audit_records):
    call_command("create_author", "From call_command")

    (only,) = crud(audit_records, model="Author")
    assert only["actor"] == "system:create_author"


def test_a_management_command_run_as_a_process(tmp_path):
    env = {
        **os.environ,
        "AUDIT_TEST_SQLITE": str(tmp_path / "db.sqlite3"),
        "AUDIT_TEST_LOG_DIR": str(tmp_path / "logs"),
        "DJANGO_SETTINGS_MODULE": "tests.crud_subprocess_settings",
    }
    env.pop("AUDIT_TEST_DB", None)
    for command in (["migrate", "--verbosity", "0"], ["create_author", "From a process"]):
        done = subprocess.run(
            [sys.executable, "-m", "django", *command],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    records = [r for r in read_lines(tmp_path / "logs" / "audit.log") if r.get("model") == "Author"]
    assert [(r["event_type"], r["actor"], r["changes"]["name"]["new"]) for r in records] == [
        ("CREATE", "system:create_author", "From a process")
    ]
