"""Bulk writes: one record per operation, unchanged return values, pks, chunking, and the cost setting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.test.utils import CaptureQueriesContext

from tests.crud_helpers import audit_settings, bulk, crud
from tests.testapp.models import ApiClient, Author, Book, Chapter, Review

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def author():
    return Author.objects.create(name="Iain")


def make_books(author, count):
    return Book.objects.bulk_create([Book(title=f"B{i}", pages=i, author=author) for i in range(count)])


def test_queryset_update_records_values_count_and_pks(audit_records, author):
    books = make_books(author, 3)
    audit_records.clear()

    updated = Book.objects.filter(pages__gte=1).update(title="Culture", pages=F("pages") + 10)

    assert updated == 2
    assert crud(audit_records) == [
        bulk(
            "QUERYSET_UPDATE",
            "Book",
            2,
            operation="update",
            values={"title": "Culture", "pages": str(F("pages") + 10)},
            pks=[books[1].pk, books[2].pk],
        )
    ]
    assert sorted(Book.objects.values_list("pages", flat=True)) == [0, 11, 12]


def test_queryset_update_from_a_subquery_records_a_text_without_memory_address(audit_records, author):
    make_books(author, 1)
    audit_records.clear()
    first_title = Book.objects.filter(author=OuterRef("pk")).order_by("pk").values("title")[:1]

    Author.objects.filter(pk=author.pk).update(name=Subquery(first_title))

    assert Author.objects.get(pk=author.pk).name == "B0"
    (update,) = crud(audit_records)
    assert update["values"] == {"name": "Subquery(...)"}


def test_update_of_no_row_writes_nothing(audit_records, author):
    audit_records.clear()
    assert Book.objects.filter(pk=-1).update(title="none") == 0
    assert crud(audit_records) == []


def test_update_masks_secret_fields(audit_records):
    ApiClient.objects.create(name="crm", api_token="old-token")
    audit_records.clear()

    ApiClient.objects.update(api_token="new-token")

    (only,) = crud(audit_records)
    assert only["values"] == {"api_token": {"changed": True, "masked": True}}
    assert "new-token" not in str(audit_records.all_records)


def test_bulk_create_returns_the_objects_and_records_rows(audit_records, author):
    audit_records.clear()
    objs = (Book(title=f"G{i}", author=author, price=Decimal("1.50")) for i in range(2))  # a generator

    created = Book.objects.bulk_create(objs)

    assert [book.title for book in created] == ["G0", "G1"]
    (only,) = crud(audit_records)
    assert only["event_type"] == "BULK_CREATE" and only["count"] == 2
    assert only["pks"] == [book.pk for book in created]
    assert [row["title"] for row in only["rows"]] == ["G0", "G1"]
    assert only["rows"][0]["price"] == "1.50" and only["rows"][0]["author"] == author.pk
    # the created objects diff against what was inserted
    audit_records.clear()
    created[0].title = "G0 renamed"
    created[0].save()
    assert crud(audit_records)[0]["changes"] == {"title": {"old": "G0", "new": "G0 renamed"}}


def test_bulk_update_records_each_rows_changes_once(audit_records, author):
    books = list(Book.objects.filter(pk__in=[b.pk for b in make_books(author, 3)]).order_by("pk"))
    audit_records.clear()
    books[0].title = "X"
    books[1].pages = 99

    matched = Book.objects.bulk_update(books, ["title", "pages"], batch_size=2)  # two inner update() calls

    assert matched == 3
    assert crud(audit_records) == [
        bulk(
            "BULK_UPDATE",
            "Book",
            3,
            operation="bulk_update",
            fields=["title", "pages"],
            pks=[b.pk for b in books],
            rows=[
                {"pk": books[0].pk, "changes": {"title": {"old": "B0", "new": "X"}}},
                {"pk": books[1].pk, "changes": {"pages": {"old": 1, "new": 99}}},
                {"pk": books[2].pk, "changes": {}},
            ],
        )
    ]


def test_queryset_delete_is_one_summary_per_model_with_cascades(audit_records, author):
    books = make_books(author, 2)
    chapters = Chapter.objects.bulk_create([Chapter(book=books[0], number=n) for n in (1, 2)])
    review = Review.objects.create(book=books[1])
    audit_records.clear()

    result = Book.objects.all().delete()

    assert result == (4, {"testapp.Chapter": 2, "testapp.Book": 2})
    origin = {"model": "testapp.Book", "queryset": True}
    assert sorted(crud(audit_records), key=lambda r: r["model"]) == [
        bulk(
            "BULK_DELETE",
            "Book",
            2,
            operation="delete",
            pks=[b.pk for b in books],
            cascade=False,
            origin=origin,
        ),
        bulk(
            "BULK_DELETE",
            "Chapter",
            2,
            operation="delete",
            pks=[c.pk for c in chapters],
            cascade=True,
            origin=origin,
        ),
        bulk("QUERYSET_UPDATE", "Review", 1, operation="update", values={"book": None}, pks=[review.pk]),
    ]


def test_instance_delete_records_the_row_and_summarises_its_cascade(audit_records, author):
    (book,) = make_books(author, 1)
    chapters = Chapter.objects.bulk_create([Chapter(book=book, number=n) for n in (1, 2, 3)])
    audit_records.clear()

    author_pk = author.pk
    author.delete()

    records = crud(audit_records)
    assert [(r["event_type"], r["model"]) for r in records] == [
        ("BULK_DELETE", "Chapter"),
        ("BULK_DELETE", "Book"),
        ("DELETE", "Author"),
    ]
    origin = {"model": "testapp.Author", "instance_id": str(author_pk)}
    assert records[0]["pks"] == [c.pk for c in chapters] and records[0]["origin"] == origin
    assert records[1]["pks"] == [book.pk] and records[1]["cascade"] is True
    assert records[2]["changes"] == {"name": {"old": "Iain", "new": None}}


def test_long_pk_lists_are_split_in_parts(audit_records, author):
    with audit_settings(BULK_CHUNK_SIZE=4):
        books = make_books(author, 10)
        Book.objects.all().delete()
        records = crud(audit_records)

    creates = [r for r in records if r["event_type"] == "BULK_CREATE"]
    deletes = [r for r in records if r["event_type"] == "BULK_DELETE"]
    for parts in (creates, deletes):
        assert [r["part"] for r in parts] == [{"index": i, "of": 3} for i in (1, 2, 3)]
        assert [pk for r in parts for pk in r["pks"]] == [b.pk for b in books]
        assert {r["count"] for r in parts} == {10}
    assert [len(r["rows"]) for r in creates] == [4, 4, 2]


def test_count_detail_runs_no_select_before_update(audit_records, author):
    make_books(author, 2)
    with CaptureQueriesContext(connection) as full:
        Book.objects.update(pages=1)
    with audit_settings(BULK_DETAIL="count"):
        with CaptureQueriesContext(connection) as counted:
            Book.objects.update(pages=2)
        Book.objects.all().delete()
        records = crud(audit_records)

    assert [q["sql"].split()[0] for q in full.captured_queries] == ["SELECT", "UPDATE"]
    assert [q["sql"].split()[0] for q in counted.captured_queries] == ["UPDATE"]
    update, delete = [r for r in records if r["event_type"] in ("QUERYSET_UPDATE", "BULK_DELETE")][-2:]
    assert "pks" not in update and update["count"] == 2 and update["values"] == {"pages": 2}
    assert "pks" not in delete and delete["count"] == 2


def test_update_across_a_join_lists_each_row_once(audit_records, author):
    from tests.testapp.models import Tag

    (book,) = make_books(author, 1)
    book.tags.add(Tag.objects.create(label="sea"), Tag.objects.create(label="magic"))
    audit_records.clear()

    updated = Book.objects.filter(tags__label__in=["sea", "magic"]).update(pages=5)

    assert updated == 1
    assert crud(audit_records) == [
        bulk("QUERYSET_UPDATE", "Book", 1, operation="update", values={"pages": 5}, pks=[book.pk])
    ]


class ReadsFromOther:
    """Primary/replica: Book is read from ``other`` (where it has no table) and written to ``default``."""

    def db_for_read(self, model, **hints):
        return "other" if model is Book else None

    def db_for_write(self, model, **hints):
        return "default" if model is Book else None


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_the_select_before_an_update_reads_the_database_written_to(audit_records, author):
    from django.test import override_settings

    books = make_books(author, 2)
    audit_records.clear()
    with override_settings(DATABASE_ROUTERS=[ReadsFromOther(), *settings_routers()]):
        updated = Book.objects.filter(pages__gte=0).update(title="Same")

    assert updated == 2
    assert crud(audit_records) == [
        bulk(
            "QUERYSET_UPDATE",
            "Book",
            2,
            operation="update",
            values={"title": "Same"},
            pks=[b.pk for b in books],
        )
    ]


def settings_routers():
    from django.conf import settings

    return list(settings.DATABASE_ROUTERS)


def test_bulk_create_with_ignored_conflicts_says_the_outcome_per_row_is_unknown(audit_records):
    from tests.testapp.models import Tag

    existing = Tag.objects.create(label="kept")
    audit_records.clear()

    Tag.objects.bulk_create([Tag(pk=existing.pk, label="clash"), Tag(label="new")], ignore_conflicts=True)

    assert sorted(Tag.objects.values_list("label", flat=True)) == ["kept", "new"]
    assert crud(audit_records) == [
        bulk(
            "BULK_CREATE",
            "Tag",
            2,
            operation="bulk_create",
            rows=[{"label": "clash"}, {"label": "new"}],
            pks_returned=False,
            ignore_conflicts=True,
            outcome_per_row_known=False,
        )
    ]


def test_bulk_create_on_a_database_that_returns_no_pks_lists_none(audit_records, monkeypatch):
    """MySQL (and MariaDB before 10.5) cannot return the rows' pks from a multi-row INSERT."""
    from tests.testapp.models import Tag

    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    made = Tag.objects.bulk_create([Tag(label="one"), Tag(label="two")])

    assert [tag.pk for tag in made] == [None, None]  # Django left them unset, as on MySQL
    assert sorted(Tag.objects.values_list("label", flat=True)) == ["one", "two"]
    assert crud(audit_records) == [
        bulk(
            "BULK_CREATE",
            "Tag",
            2,
            operation="bulk_create",
            rows=[{"label": "one"}, {"label": "two"}],
            pks_returned=False,
        )
    ]


def test_bulk_create_with_updated_conflicts_names_the_fields_and_keeps_no_snapshot(audit_records):
    from tests.testapp.models import Tag

    existing = Tag.objects.create(label="old")
    audit_records.clear()

    # MySQL upserts on any unique key and refuses a list of them.
    unique_fields = ["id"] if connection.features.supports_update_conflicts_with_target else None
    (clash,) = Tag.objects.bulk_create(
        [Tag(pk=existing.pk, label="upserted")],
        update_conflicts=True,
        unique_fields=unique_fields,
        update_fields=["label"],
    )

    (only,) = crud(audit_records)
    assert {key: only[key] for key in ("count", "update_conflicts", "update_fields", "unique_fields")} == {
        "count": 1,
        "update_conflicts": True,
        "update_fields": ["label"],
        "unique_fields": unique_fields or [],
    }
    assert only["outcome_per_row_known"] is False
    audit_records.clear()
    clash.label = "renamed"
    clash.save()  # the old value is not known from the upsert: said so, not made up
    assert crud(audit_records)[0]["changes"] == {
        "label": {"old": None, "new": "renamed", "old_unknown": True}
    }


def test_bulk_update_listing_a_row_twice_records_what_the_row_got(audit_records, author):
    (book,) = make_books(author, 1)
    first, second = Book.objects.get(pk=book.pk), Book.objects.get(pk=book.pk)
    first.pages, second.pages = 5, 7
    audit_records.clear()

    Book.objects.bulk_update([first, second], ["pages"])

    assert Book.objects.get(pk=book.pk).pages == 5  # Django's UPDATE ... CASE takes the first listed
    assert crud(audit_records) == [
        bulk(
            "BULK_UPDATE",
            "Book",
            1,
            operation="bulk_update",
            fields=["pages"],
            pks=[book.pk],
            rows=[{"pk": book.pk, "changes": {"pages": {"old": 0, "new": 5}}, "listed_more_than_once": True}],
            duplicate_pks=[book.pk],
        )
    ]


def test_bulk_update_listing_a_row_in_two_batches_records_what_the_last_batch_wrote(audit_records, author):
    (book,) = make_books(author, 1)
    first, second, third = (Book.objects.get(pk=book.pk) for _ in range(3))
    first.pages, second.pages, third.pages = 5, 7, 9
    audit_records.clear()

    Book.objects.bulk_update([first, second, third], ["pages"], batch_size=2)  # [first, second], [third]

    assert Book.objects.get(pk=book.pk).pages == 9
    (only,) = crud(audit_records)
    assert only["rows"] == [
        {"pk": book.pk, "changes": {"pages": {"old": 0, "new": 9}}, "listed_more_than_once": True}
    ]
    assert only["duplicate_pks"] == [book.pk]
    audit_records.clear()
    third.pages = 10
    third.save()  # the object whose values the row got diffs against them
    assert crud(audit_records)[0]["changes"] == {"pages": {"old": 9, "new": 10}}


@pytest.mark.skipif(not connection.features.has_select_for_update, reason="no row locks on this database")
def test_update_of_a_select_for_update_queryset_reads_its_pks_without_locking(audit_records, author):
    """Django's update() ignores select_for_update(); the SELECT of pks before it must not lock either:
    outside a transaction a locking read raises, and with nowait it can abort the user's transaction."""
    (book,) = make_books(author, 1)
    audit_records.clear()

    updated = Book.objects.select_for_update().filter(pk=book.pk).update(title="Locked")  # autocommit
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        Book.objects.select_for_update(nowait=True, skip_locked=False).filter(pk=book.pk).update(pages=1)

    assert updated == 1
    assert not [query for query in queries if "FOR UPDATE" in query["sql"]]
    assert crud(audit_records) == [
        bulk("QUERYSET_UPDATE", "Book", 1, operation="update", values={"title": "Locked"}, pks=[book.pk]),
        bulk("QUERYSET_UPDATE", "Book", 1, operation="update", values={"pages": 1}, pks=[book.pk]),
    ]
