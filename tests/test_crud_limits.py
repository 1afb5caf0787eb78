"""Values over the capture limits (``MAX_FIELD_CHARS``, ``MAX_ITEMS``): cut with an inline marker, and the
change and the record both say ``"truncated": true``; records with nothing cut carry no such key."""

from __future__ import annotations

import pytest

from tests.crud_helpers import audit_settings, book_values, bulk, crud, record
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)
LIMIT = 40
LONG = "word " * 20  # 100 characters
CUT = f"{LONG[:LIMIT]}…[truncated: {len(LONG)} chars]"


@pytest.fixture
def author():
    return Author.objects.create(name="Frank")


@pytest.fixture
def small_limits():
    with audit_settings(MAX_FIELD_CHARS=LIMIT, MAX_ITEMS=3, MAX_DEPTH=3, BULK_CHUNK_SIZE=1):
        yield


def test_create_update_delete_of_a_long_text_say_it_was_cut(audit_records, author, small_limits):
    audit_records.clear()
    book = Book.objects.create(author=author, **book_values(summary=LONG))
    book.summary = "short"
    book.save()
    book.title = "Dune II"
    book.save()
    pk = book.pk
    book.delete()

    created, updated, renamed, deleted = crud(audit_records)
    assert created["changes"]["summary"] == {"old": None, "new": CUT, "truncated": True}
    assert created["changes"]["title"] == {"old": None, "new": "Dune"}
    assert created["truncated"] is True
    assert updated == record(
        "UPDATE",
        "Book",
        pk,
        {"summary": {"old": CUT, "new": "short", "truncated": True}},
        truncated=True,
    )
    assert renamed == record("UPDATE", "Book", pk, {"title": {"old": "Dune", "new": "Dune II"}})
    assert deleted["changes"]["summary"] == {"old": "short", "new": None}
    assert "truncated" not in deleted
    assert Book.objects.filter(summary=LONG).count() == 0  # the row held the whole text until deleted


def test_a_json_value_with_too_many_items_is_cut_and_says_so(audit_records, author, small_limits):
    book = Book.objects.create(author=author, **book_values())
    audit_records.clear()

    book.metadata = {"tags": ["a", "b", "c", "d", "e"]}
    book.save()

    (updated,) = crud(audit_records)
    assert updated["changes"] == {
        "metadata": {
            "old": {"edition": 1, "languages": ["en"]},
            "new": {"tags": ["a", "b", "c", "…[truncated: 5 items]"]},
            "truncated": True,
        }
    }
    assert updated["truncated"] is True
    assert Book.objects.get(pk=book.pk).metadata == {"tags": ["a", "b", "c", "d", "e"]}

    audit_records.clear()
    book.metadata = {"a": {"b": {"c": {"d": 1}}}}
    book.save()
    (updated,) = crud(audit_records)
    assert updated["changes"]["metadata"]["new"] == {"a": {"b": {"c": "[truncated: nested deeper than 3]"}}}
    assert updated["truncated"] is True


def test_bulk_records_say_truncated_only_for_the_chunk_holding_the_cut(audit_records, author, small_limits):
    audit_records.clear()
    made = Book.objects.bulk_create(
        [Book(author=author, **book_values(title="Short")), Book(author=author, **book_values(summary=LONG))]
    )
    first, second = crud(audit_records, event_type="BULK_CREATE")
    assert "truncated" not in first
    assert second["rows"][0]["summary"] == CUT
    assert second["truncated"] is True

    audit_records.clear()
    made[0].summary, made[1].summary = LONG, "plain"
    Book.objects.bulk_update(made, ["summary"])
    first, second = crud(audit_records, event_type="BULK_UPDATE")
    assert first["rows"] == [
        {"pk": made[0].pk, "changes": {"summary": {"old": "Spice.", "new": CUT, "truncated": True}}}
    ]
    assert first["truncated"] is True
    assert second["rows"] == [
        {"pk": made[1].pk, "changes": {"summary": {"old": CUT, "new": "plain", "truncated": True}}}
    ]
    assert second["truncated"] is True

    audit_records.clear()
    Book.objects.filter(pk=made[0].pk).update(summary=LONG)
    assert crud(audit_records) == [
        bulk(
            "QUERYSET_UPDATE",
            "Book",
            1,
            operation="update",
            values={"summary": CUT},
            truncated=True,
            pks=[made[0].pk],
        )
    ]
