"""``audit_context``: who acts outside a request, restored on exit, private to each thread and task."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User

from activity_audit.actor import Actor, resolve_actor
from activity_audit.context import AuditContext, audit_context, current, process_source, request_scope


class FakeRequest:
    def __init__(self, user: Any) -> None:
        self.user = user


def snapshot_context() -> tuple[Any, str | None, str | None]:
    context = current()
    return context.actor, context.source, context.request_id


def test_context_manager_sets_and_restores() -> None:
    assert current() == AuditContext()
    with audit_context(actor="system:import", source="import_prices", request_id="r-1") as inside:
        assert inside == current()
        assert snapshot_context() == ("system:import", "import_prices", "r-1")
        with audit_context(source="inner"):
            assert snapshot_context() == ("system:import", "inner", "r-1")  # layered over the outer one
        assert snapshot_context() == ("system:import", "import_prices", "r-1")
    assert current() == AuditContext()


def test_context_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), audit_context(actor="system:job"):
        raise RuntimeError("job failed")
    assert current() == AuditContext()


def test_decorator_on_a_function() -> None:
    @audit_context(actor="system:nightly", source="nightly")
    def job(fail: bool) -> tuple[Any, str | None, str | None]:
        if fail:
            raise ValueError("no")
        return snapshot_context()

    assert job(False) == ("system:nightly", "nightly", None)
    with pytest.raises(ValueError):
        job(True)
    assert current() == AuditContext()
    assert job.__name__ == "job"


def test_decorator_on_a_coroutine_function() -> None:
    @audit_context(actor="system:async-job", source="worker")
    async def job(fail: bool) -> tuple[Any, str | None, str | None]:
        await asyncio.sleep(0)
        if fail:
            raise ValueError("no")
        return snapshot_context()

    async def main() -> tuple[Any, Any]:
        result = await job(False)
        with pytest.raises(ValueError):
            await job(True)
        return result, current()

    result, after = asyncio.run(main())
    assert result == ("system:async-job", "worker", None)
    assert after == AuditContext()
    assert asyncio.iscoroutinefunction(job)


def test_concurrent_tasks_do_not_see_each_other() -> None:
    async def worker(name: str, entered: asyncio.Event, other_entered: asyncio.Event) -> list[Any]:
        seen = []
        with audit_context(actor=f"system:{name}"):
            entered.set()
            await other_entered.wait()  # both tasks are inside their blocks now
            seen.append(current().actor)
        seen.append(current().actor)
        return seen

    async def main() -> list[list[Any]]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(worker("a", a, b), worker("b", b, a)))

    assert asyncio.run(main()) == [["system:a", None], ["system:b", None]]


def test_threads_do_not_leak_into_each_other() -> None:
    barrier = threading.Barrier(2, timeout=10)
    shared = audit_context(source="shared-instance")  # one instance entered by both threads at once
    results: dict[str, list[Any]] = {}

    def run(name: str) -> None:
        seen = []
        with audit_context(actor=f"system:{name}"), shared:
            barrier.wait()
            seen.append(snapshot_context())
            barrier.wait()
        seen.append(snapshot_context())
        results[name] = seen

    with audit_context(actor="system:main"):
        threads = [threading.Thread(target=run, args=(name,)) for name in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert current().actor == "system:main"
    assert results == {
        "one": [("system:one", "shared-instance", None), (None, None, None)],
        "two": [("system:two", "shared-instance", None), (None, None, None)],
    }


def test_a_new_thread_does_not_inherit_the_starting_threads_context() -> None:
    seen: list[Any] = []
    with audit_context(actor="system:parent"):
        thread = threading.Thread(target=lambda: seen.append(current().actor))
        thread.start()
        thread.join(10)
    assert seen == [None]


def test_resolve_actor_order() -> None:
    user = User(pk=5, username="ann")
    assert resolve_actor() == Actor(f"system:{process_source()}", None)
    with audit_context(source="import_prices"):
        assert resolve_actor() == Actor("system:import_prices", None)
    with audit_context(actor="system:cron"):
        assert resolve_actor() == Actor("system:cron", None)
    with audit_context(actor=user):
        assert resolve_actor() == Actor("user:5", {"id": 5, "username": "ann"})
    with request_scope(FakeRequest(AnonymousUser()), "req-1"):
        assert resolve_actor() == Actor("anonymous", None)
        with audit_context(actor="system:impersonation"):
            assert resolve_actor() == Actor("system:impersonation", None)  # an explicit actor wins
    request = FakeRequest(AnonymousUser())
    with request_scope(request, "req-2"):
        request.user = user  # authenticated inside the view (token/JWT): read at the time of the change
        assert resolve_actor() == Actor("user:5", {"id": 5, "username": "ann"})


def test_process_source_names_the_management_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/srv/app/manage.py", "import_prices", "--all"])
    assert process_source() == "import_prices"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/celery", "worker"])
    assert process_source() == "celery"
    monkeypatch.setattr(sys, "argv", [])
    assert process_source() == "python"
