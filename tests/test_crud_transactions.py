"""Records wait for the commit of the change's own database and vanish with a rollback."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.db import transaction

from tests.crud_helpers import crud, record
from tests.testapp.models import Author, LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


class Rollback(Exception):
    pass


def test_nothing_is_emitted_before_the_outermost_commit(audit_records):
    with transaction.atomic():
        author = Author.objects.create(name="Pending")
        with transaction.atomic():
            author.name = "Still pending"
            author.save()
        assert crud(audit_records) == []
    assert [r["event_type"] for r in crud(audit_records)] == ["CREATE", "UPDATE"]


def test_a_rolled_back_transaction_emits_nothing(audit_records):
    with pytest.raises(Rollback), transaction.atomic():
        Author.objects.create(name="Gone")
        raise Rollback
    assert crud(audit_records) == []
    assert not Author.objects.exists()


def test_a_rolled_back_savepoint_emits_nothing_of_what_it_undid(audit_records):
    with transaction.atomic():
        kept = Author.objects.create(name="Kept")
        try:
            with transaction.atomic():
                undone = Author.objects.create(name="Undone")
                kept.name = "Renamed inside the savepoint"
                kept.save()
                raise Rollback
        except Rollback:
            pass
        Author.objects.filter(pk=kept.pk).update(name="After")

    assert [(r["event_type"], r["instance_id"] or r["pks"]) for r in crud(audit_records)] == [
        ("CREATE", str(kept.pk)),
        ("QUERYSET_UPDATE", [kept.pk]),
    ]
    assert not Author.objects.filter(pk=undone.pk).exists()


def test_each_database_commits_on_its_own(audit_records):
    with transaction.atomic(using="other"):
        entry = LedgerEntry.objects.create(amount=Decimal("10.00"))
        Author.objects.create(name="Autocommit on default")  # committed at once: emitted at once
        assert [r["model"] for r in crud(audit_records)] == ["Author"]
    assert crud(audit_records, model="LedgerEntry") == [
        record("CREATE", "LedgerEntry", entry.pk, {"amount": {"old": None, "new": "10.00"}}, db="other")
    ]


def test_a_rollback_on_one_database_does_not_touch_the_other(audit_records):
    with transaction.atomic(using="default"):
        author = Author.objects.create(name="Committed")
        with pytest.raises(Rollback), transaction.atomic(using="other"):
            LedgerEntry.objects.create(amount=Decimal("1.00"))
            raise Rollback
    assert [(r["model"], r["db"]) for r in crud(audit_records)] == [("Author", "default")]
    assert author.pk is not None and not LedgerEntry.objects.exists()


def test_the_timestamp_is_the_time_of_the_change_not_of_the_commit(audit_records):
    with transaction.atomic():
        before = dt.datetime.now(dt.timezone.utc)
        Author.objects.create(name="Early")
        changed = dt.datetime.now(dt.timezone.utc)
        time.sleep(0.05)  # the commit happens clearly later
    committed = dt.datetime.now(dt.timezone.utc)

    (only,) = audit_records.of("audit.crud")
    stamp = dt.datetime.fromisoformat(only["timestamp"])
    assert before <= stamp <= changed < committed


def test_a_delete_in_a_rolled_back_transaction_emits_nothing(audit_records):
    author = Author.objects.create(name="Survivor")
    audit_records.clear()
    with pytest.raises(Rollback), transaction.atomic():
        Author.objects.filter(pk=author.pk).delete()
        raise Rollback
    assert crud(audit_records) == []
    assert Author.objects.filter(pk=author.pk).exists()


def test_a_second_delete_of_one_queryset_in_a_rolled_back_savepoint_adds_no_row(audit_records):
    from tests.testapp.models import Tag

    first = Tag.objects.create(label="a1")
    audit_records.clear()
    starting_with_a = Tag.objects.filter(label__startswith="a")
    with transaction.atomic():
        starting_with_a.delete()
        second = Tag.objects.create(label="a2")
        with pytest.raises(Rollback), transaction.atomic():
            starting_with_a.delete()  # the same queryset object: deletes a2, then rolls back
            raise Rollback

    assert list(Tag.objects.values_list("pk", flat=True)) == [second.pk]
    deleted, created = crud(audit_records)
    assert (deleted["event_type"], deleted["count"], deleted["pks"]) == ("BULK_DELETE", 1, [first.pk])
    assert (created["event_type"], created["instance_id"]) == ("CREATE", str(second.pk))


class BrokerDown(Exception):
    pass


def test_a_project_callback_that_raises_at_commit_costs_no_record(audit_records):
    """Django abandons the callbacks after one that raises; the data is committed, so ours still run."""
    ran_after: list[str] = []

    def enqueue_task() -> None:  # e.g. task.delay() with the broker down
        raise BrokerDown

    with pytest.raises(BrokerDown), transaction.atomic():
        transaction.on_commit(enqueue_task)
        author = Author.objects.create(name="Committed")
        author.name = "Renamed"
        author.save()
        Author.objects.filter(pk=author.pk).delete()
        transaction.on_commit(lambda: ran_after.append("project callback"))

    assert not Author.objects.exists()
    assert [(r["event_type"], r["instance_id"]) for r in crud(audit_records)] == [
        ("CREATE", str(author.pk)),
        ("UPDATE", str(author.pk)),
        ("BULK_DELETE", None),
    ]
    assert ran_after == []  # Django's own behaviour for the project's callbacks is unchanged


def test_audit_callbacks_run_once_when_the_commit_hooks_succeed(audit_records):
    with transaction.atomic():
        Author.objects.create(name="Once")
        transaction.on_commit(lambda: None)
    assert [r["event_type"] for r in crud(audit_records)] == ["CREATE"]
