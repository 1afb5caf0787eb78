"""Rows the database deletes or changes by itself (``on_delete=DB_CASCADE``, ``DB_SET_NULL``,
``DB_SET_DEFAULT``, Django 6.1 and later): read before the delete, recorded at commit, like the rows Django's
collector deletes."""

from __future__ import annotations

import django
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tests.crud_helpers import bulk, crud

pytestmark = [
    pytest.mark.skipif(django.VERSION < (6, 1), reason="on_delete=DB_* came with Django 6.1"),
    pytest.mark.django_db(transaction=True),
]


def models():
    from tests.dbdeletes import models

    return models


@pytest.fixture
def shelves():
    """Shelf 1 (the stickers' default) and shelf 2, with two volumes, three bookmarks, a loan and a
    sticker on shelf 2."""
    m = models()
    default, shelf = m.Shelf.objects.create(pk=1, name="default"), m.Shelf.objects.create(pk=2, name="two")
    first, second = (m.Volume.objects.create(shelf=shelf, title=title) for title in ("A", "B"))
    marks = [
        m.Bookmark.objects.create(volume=volume, page=page)
        for volume, page in ((first, 1), (first, 2), (second, 3))
    ]
    loan = m.Loan.objects.create(volume=second, borrower="ada")
    sticker = m.Sticker.objects.create(shelf=shelf, text="new")
    return default, shelf, [first, second], marks, loan, sticker


def test_rows_the_database_deletes_and_changes_are_recorded(audit_records, shelves):
    default, shelf, volumes, marks, loan, sticker = shelves
    audit_records.clear()

    shelf.delete()

    m = models()
    assert not m.Volume.objects.exists() and not m.Bookmark.objects.exists()
    assert m.Loan.objects.get().volume_id is None
    assert m.Sticker.objects.get().shelf_id == default.pk
    origin = {"model": "dbdeletes.Shelf", "instance_id": "2"}
    records = crud(audit_records)
    assert records[0]["event_type"] == "DELETE" and records[0]["instance_id"] == "2"
    assert sorted(records[1:], key=lambda r: (r["event_type"], r["model"])) == [
        bulk(
            "BULK_DELETE", "Bookmark", 3, app="dbdeletes", operation="delete",
            pks=[mark.pk for mark in marks], cascade=True, origin=origin, on_delete="DB_CASCADE",
        ),
        bulk(
            "BULK_DELETE", "Volume", 2, app="dbdeletes", operation="delete",
            pks=[volume.pk for volume in volumes], cascade=True, origin=origin, on_delete="DB_CASCADE",
        ),
        bulk(
            "QUERYSET_UPDATE", "Loan", 1, app="dbdeletes", operation="update",
            values={"volume": None}, on_delete="DB_SET_NULL", pks=[loan.pk],
        ),
        bulk(
            "QUERYSET_UPDATE", "Sticker", 1, app="dbdeletes", operation="update",
            values={"shelf": 1}, on_delete="DB_SET_DEFAULT", pks=[sticker.pk],
        ),
    ]  # fmt: skip


def test_a_queryset_delete_reaches_them_too(audit_records, shelves):
    marks = shelves[3]
    audit_records.clear()

    models().Volume.objects.filter(title="A").delete()

    records = crud(audit_records)
    bookmarks = [r for r in records if r["model"] == "Bookmark"]
    assert [(r["event_type"], r["pks"], r["on_delete"]) for r in bookmarks] == [
        ("BULK_DELETE", [marks[0].pk, marks[1].pk], "DB_CASCADE")
    ]
    assert [r for r in records if r["model"] == "Loan"] == []  # the loan was on volume B


def test_nothing_is_recorded_when_the_delete_rolls_back(audit_records, shelves):
    _, shelf, *_ = shelves
    audit_records.clear()

    with pytest.raises(RuntimeError), transaction.atomic():
        shelf.delete()
        raise RuntimeError("rolled back")

    assert crud(audit_records) == []
    assert models().Bookmark.objects.count() == 3


def test_a_delete_that_reaches_no_such_relation_costs_no_query(audit_records, shelves):
    *_, marks, _, _ = shelves
    with CaptureQueriesContext(connection) as queries:
        marks[0].delete()  # nothing points at a bookmark
    assert [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")] == []


@pytest.mark.parametrize("step", ["_read_changes", "_record"])
def test_a_capture_that_fails_never_touches_the_delete(audit_records, shelves, monkeypatch, step):
    from activity_audit.crud import db_deletes
    from activity_audit.dispatch import pipeline

    def fails(*args, **kwargs):
        raise RuntimeError("capture bug")

    monkeypatch.setattr(db_deletes, step, fails)
    _, shelf, *_ = shelves
    audit_records.clear()

    shelf.delete()

    m = models()
    assert not m.Shelf.objects.filter(pk=shelf.pk or 2).exists() and not m.Bookmark.objects.exists()
    assert [r["event_type"] for r in crud(audit_records)] == ["DELETE"]  # the shelf's own record
    pipeline.reporter.flush_all()  # the report now, whatever an earlier test reported within the interval
    [report] = audit_records.of(
        "activity_audit.pipeline", event_type="CAPTURE_FAILED", source="crud:db_on_delete"
    )
    assert report["error"] == "RuntimeError: capture bug"
