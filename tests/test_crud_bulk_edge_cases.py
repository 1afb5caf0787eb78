"""Bulk writes at their edges: field settings in either spelling, rows Django changes for ``on_delete``,
``bulk_update()`` of a filtered queryset, and the snapshots of objects a related manager moved."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext

from activity_audit.context import audit_context
from tests.crud_helpers import audit_settings, bulk, crud, record
from tests.testapp.models import Author, Board, Book, Note, Review

pytestmark = pytest.mark.django_db(transaction=True)

MASKED = {"changed": True, "masked": True}


@pytest.fixture
def author():
    return Author.objects.create(name="Iain")


# --- QuerySet.update(): EXCLUDE_FIELDS and MASK_FIELDS name a foreign key `author` or `author_id` ------


@pytest.mark.parametrize("named", ["author", "author_id"])
@pytest.mark.parametrize("given", ["author", "author_id"])
def test_update_masks_a_foreign_key_whichever_spelling_names_it(audit_records, author, named, given):
    other = Author.objects.create(name="Ann")
    book = Book.objects.create(title="t", author=author)
    with audit_settings(MASK_FIELDS={"testapp.Book": [named]}):
        audit_records.clear()
        Book.objects.filter(pk=book.pk).update(**{given: other if given == "author" else other.pk})
        records = crud(audit_records)

    assert records == [
        bulk("QUERYSET_UPDATE", "Book", 1, operation="update", values={"author": MASKED}, pks=[book.pk])
    ]


@pytest.mark.parametrize("named", ["author", "author_id"])
@pytest.mark.parametrize("given", ["author", "author_id"])
def test_update_leaves_out_a_foreign_key_whichever_spelling_excludes_it(audit_records, author, named, given):
    other = Author.objects.create(name="Ann")
    book = Book.objects.create(title="t", author=author)
    with audit_settings(EXCLUDE_FIELDS={"testapp.Book": [named]}):
        audit_records.clear()
        Book.objects.filter(pk=book.pk).update(title="u", **{given: other if given == "author" else other.pk})
        records = crud(audit_records)

    assert records == [
        bulk("QUERYSET_UPDATE", "Book", 1, operation="update", values={"title": "u"}, pks=[book.pk])
    ]
    assert Book.objects.get(pk=book.pk).author_id == other.pk


# --- on_delete=SET_DEFAULT and SET(...): Django changes the rows it loaded by pk, not with update() ---


def _fallback_book():
    return Book.objects.get(title="fallback")


@pytest.fixture(params=["SET_NULL", "SET_DEFAULT", "SET(callable)"])
def review_on_delete(request, monkeypatch):
    """``Review.book`` with another ``on_delete`` (its default is None, as SET_NULL's value)."""
    on_delete = {
        "SET_NULL": models.SET_NULL,
        "SET_DEFAULT": models.SET_DEFAULT,
        "SET(callable)": models.SET(lambda: None),
    }[request.param]
    monkeypatch.setattr(Review._meta.get_field("book").remote_field, "on_delete", on_delete)
    return request.param


def test_rows_set_by_on_delete_are_a_queryset_update_of_their_model(audit_records, author, review_on_delete):
    book, kept = Book.objects.create(title="b", author=author), Book.objects.create(title="k", author=author)
    reviews = [Review.objects.create(book=book) for _ in range(3)]
    Review.objects.create(book=kept)
    audit_records.clear()

    Book.objects.filter(pk=book.pk).delete()

    assert list(Review.objects.filter(book=None).order_by("pk").values_list("pk", flat=True)) == [
        review.pk for review in reviews
    ]
    assert crud(audit_records, model="Review") == [
        bulk(
            "QUERYSET_UPDATE",
            "Review",
            3,
            operation="update",
            values={"book": None},
            pks=[review.pk for review in reviews],
        )
    ]


def test_rows_set_by_the_cascade_of_an_instance_delete_are_recorded(audit_records, author, monkeypatch):
    monkeypatch.setattr(Review._meta.get_field("book").remote_field, "on_delete", models.SET(_fallback_book))
    fallback = Book.objects.create(title="fallback", author=Author.objects.create(name="Ann"))
    book = Book.objects.create(title="b", author=author)
    review = Review.objects.create(book=book, stars=4)
    audit_records.clear()

    author.delete()  # cascades to the book, whose review moves to the fallback book

    assert Review.objects.get(pk=review.pk).book_id == fallback.pk
    records = crud(audit_records)
    assert [(r["event_type"], r["model"]) for r in records] == [
        ("QUERYSET_UPDATE", "Review"),
        ("BULK_DELETE", "Book"),
        ("DELETE", "Author"),
    ]
    assert records[0] == bulk(
        "QUERYSET_UPDATE", "Review", 1, operation="update", values={"book": fallback.pk}, pks=[review.pk]
    )


def test_rows_set_by_on_delete_follow_the_detail_setting_and_the_transaction(
    audit_records, author, monkeypatch
):
    monkeypatch.setattr(Review._meta.get_field("book").remote_field, "on_delete", models.SET_DEFAULT)
    books = [Book.objects.create(title=f"b{i}", author=author) for i in range(2)]
    for book in books:
        Review.objects.create(book=book)
    audit_records.clear()

    with audit_settings(BULK_DETAIL="count"):
        with pytest.raises(RuntimeError), transaction.atomic():
            Book.objects.filter(pk=books[0].pk).delete()
            raise RuntimeError("rolled back")
        assert crud(audit_records) == []
        Book.objects.filter(pk=books[1].pk).delete()
        records = crud(audit_records, model="Review")

    assert records == [bulk("QUERYSET_UPDATE", "Review", 1, operation="update", values={"book": None})]


# --- bulk_update() writes only the rows its queryset matches ------------------------------------------------


def _short_and_long_books(author):
    """A short and a long book, loaded, with their titles upper-cased in memory."""
    Book.objects.create(title="short", pages=50, author=author)
    Book.objects.create(title="long", pages=500, author=author)
    books = list(Book.objects.order_by("pk"))
    for book in books:
        book.title = book.title.upper()
    return books


def _statements(queries):
    return [
        q["sql"].split()[0] for q in queries.captured_queries if q["sql"].split()[0] in ("SELECT", "UPDATE")
    ]


def test_bulk_update_of_a_filtered_queryset_records_only_the_rows_it_wrote(audit_records, author):
    short, long_ = _short_and_long_books(author)
    audit_records.clear()

    with CaptureQueriesContext(connection) as queries:
        count = Book.objects.filter(pages__gt=100).bulk_update([short, long_], ["title"], batch_size=1)

    assert count == 1 and Book.objects.get(pk=short.pk).title == "short"
    assert _statements(queries) == ["SELECT", "UPDATE", "SELECT", "UPDATE"]  # a SELECT of pks per batch
    assert crud(audit_records) == [
        bulk(
            "BULK_UPDATE",
            "Book",
            1,
            operation="bulk_update",
            fields=["title"],
            pks=[long_.pk],
            rows=[{"pk": long_.pk, "changes": {"title": {"old": "long", "new": "LONG"}}}],
        )
    ]
    audit_records.clear()
    short.save()  # the change bulk_update() left undone is made, and recorded, now
    long_.save()  # bulk_update() made it already
    assert crud(audit_records) == [
        record("UPDATE", "Book", short.pk, {"title": {"old": "short", "new": "SHORT"}})
    ]


def test_bulk_update_of_an_unfiltered_queryset_runs_no_select(audit_records, author):
    short, long_ = _short_and_long_books(author)
    audit_records.clear()

    with CaptureQueriesContext(connection) as queries:
        Book.objects.bulk_update([short, long_], ["title"])

    assert _statements(queries) == ["UPDATE"]
    assert [(r["count"], r["pks"]) for r in crud(audit_records)] == [(2, [short.pk, long_.pk])]


def test_bulk_update_that_wrote_fewer_rows_than_it_can_tell_says_so_and_forgets_those_fields(
    audit_records, author
):
    """Unfiltered: no SELECT; a listed row deleted meanwhile makes the outcome per row unknown."""
    short, long_ = _short_and_long_books(author)
    Book.objects.filter(pk=short.pk).delete()
    long_.pages = 501  # not listed in fields: not written, its snapshot stays
    audit_records.clear()

    count = Book.objects.bulk_update([short, long_], ["title"])

    assert count == 1
    assert crud(audit_records) == [
        bulk(
            "BULK_UPDATE",
            "Book",
            1,
            operation="bulk_update",
            fields=["title"],
            pks=[short.pk, long_.pk],
            rows=[
                {"pk": short.pk, "changes": {"title": {"old": "short", "new": "SHORT"}}},
                {"pk": long_.pk, "changes": {"title": {"old": "long", "new": "LONG"}}},
            ],
            outcome_per_row_known=False,
        )
    ]
    audit_records.clear()
    long_.save()
    assert crud(audit_records) == [
        record(
            "UPDATE",
            "Book",
            long_.pk,
            {"title": {"old": None, "new": "LONG", "old_unknown": True}, "pages": {"old": 500, "new": 501}},
        )
    ]


def test_bulk_update_of_a_filtered_queryset_with_count_detail_runs_no_select(audit_records, author):
    short, long_ = _short_and_long_books(author)
    audit_records.clear()

    with audit_settings(BULK_DETAIL="count"):
        with CaptureQueriesContext(connection) as queries:
            Book.objects.filter(pages__gt=100).bulk_update([short, long_], ["title"])
        records = crud(audit_records)
        audit_records.clear()
        short.save()
        saved = crud(audit_records)

    assert _statements(queries) == ["UPDATE"]
    assert records == [
        bulk("BULK_UPDATE", "Book", 1, operation="bulk_update", fields=["title"], outcome_per_row_known=False)
    ]
    assert saved == [
        record("UPDATE", "Book", short.pk, {"title": {"old": None, "new": "SHORT", "old_unknown": True}})
    ]


def test_bulk_update_writing_no_row_records_nothing_and_keeps_the_snapshots(audit_records, author):
    short, long_ = _short_and_long_books(author)
    audit_records.clear()

    assert Book.objects.filter(pages__gt=1000).bulk_update([short, long_], ["title"]) == 0
    assert crud(audit_records) == []
    long_.save()
    assert crud(audit_records) == [
        record("UPDATE", "Book", long_.pk, {"title": {"old": "long", "new": "LONG"}})
    ]


# --- A reverse foreign-key manager's add() moves the objects in memory: their snapshots follow -------------


@pytest.fixture
def moved_review(author):
    """A review of ``b1``, loaded, and the books ``b1`` and ``b2``."""
    b1, b2 = (Book.objects.create(title=title, author=author) for title in ("b1", "b2"))
    review = Review.objects.get(pk=Review.objects.create(book=b1).pk)
    return review, b1, b2


def test_save_after_a_related_add_records_only_what_the_save_changed(audit_records, moved_review):
    review, _, b2 = moved_review
    audit_records.clear()

    with audit_context(actor="user:admin", request_id="req-move"):
        b2.reviews.add(review)
    with audit_context(actor="user:rater", request_id="req-rate"):
        review.stars = 5
        review.save()

    assert Review.objects.get(pk=review.pk).book_id == b2.pk
    assert crud(audit_records) == [
        bulk(
            "QUERYSET_UPDATE",
            "Review",
            1,
            operation="update",
            values={"book": b2.pk},
            pks=[review.pk],
            actor="user:admin",
            request_id="req-move",
        ),
        record(
            "UPDATE",
            "Review",
            review.pk,
            {"stars": {"old": 3, "new": 5}},
            actor="user:rater",
            request_id="req-rate",
        ),
    ]


def test_save_after_an_async_related_add_records_only_what_the_save_changed(audit_records, moved_review):
    review, _, b2 = moved_review
    audit_records.clear()

    async def main():
        await b2.reviews.aadd(review)
        review.stars = 4
        await review.asave()

    async_to_sync(main)()

    assert [r["changes"] for r in crud(audit_records, event_type="UPDATE")] == [
        {"stars": {"old": 3, "new": 4}}
    ]


def test_save_after_a_related_set_records_only_what_the_save_changed(audit_records, moved_review):
    review, _, b2 = moved_review
    Review.objects.create(book=b2)
    audit_records.clear()

    b2.reviews.set([review])  # b2's other review loses its book, and review moves to b2: two updates
    review.stars = 4
    review.save()

    assert [(r["event_type"], r.get("values"), r["changes"]) for r in crud(audit_records)] == [
        ("QUERYSET_UPDATE", {"book": None}, {}),
        ("QUERYSET_UPDATE", {"book": b2.pk}, {}),
        ("UPDATE", None, {"stars": {"old": 3, "new": 4}}),
    ]


def test_a_related_add_rolled_back_leaves_the_move_to_the_next_save(audit_records, moved_review):
    review, b1, b2 = moved_review
    audit_records.clear()

    with pytest.raises(RuntimeError), transaction.atomic():
        b2.reviews.add(review)
        raise RuntimeError("rolled back")
    review.save()  # the instance still says b2 (Django's behaviour): this save moves the row

    assert Review.objects.get(pk=review.pk).book_id == b2.pk
    assert crud(audit_records) == [
        record("UPDATE", "Review", review.pk, {"book": {"old": b1.pk, "new": b2.pk}})
    ]


def test_a_related_add_committed_in_a_transaction_stays_in_the_snapshot(audit_records, moved_review):
    review, _, b2 = moved_review
    with transaction.atomic():
        b2.reviews.add(review)
    audit_records.clear()

    review.stars = 5
    review.save()

    assert crud(audit_records) == [record("UPDATE", "Review", review.pk, {"stars": {"old": 3, "new": 5}})]


def test_save_of_a_stale_object_after_a_related_remove_records_the_key_it_writes_back(
    audit_records, moved_review
):
    """``remove()`` writes NULL but leaves the object holding its old key: a full save writes it back."""
    review, b1, _ = moved_review
    audit_records.clear()

    with audit_context(actor="user:admin", request_id="req-remove"):
        b1.reviews.remove(review)
    assert Review.objects.get(pk=review.pk).book_id is None and review.book_id == b1.pk
    with audit_context(actor="user:rater", request_id="req-rate"):
        review.stars = 5
        review.save()

    assert Review.objects.get(pk=review.pk).book_id == b1.pk
    assert crud(audit_records) == [
        bulk(
            "QUERYSET_UPDATE",
            "Review",
            1,
            operation="update",
            values={"book": None},
            pks=[review.pk],
            actor="user:admin",
            request_id="req-remove",
        ),
        record(
            "UPDATE",
            "Review",
            review.pk,
            {"book": {"old": None, "new": b1.pk}, "stars": {"old": 3, "new": 5}},
            actor="user:rater",
            request_id="req-rate",
        ),
    ]


def test_save_of_a_stale_object_after_a_related_remove_one_by_one_records_the_key_it_writes_back(
    audit_records, moved_review
):
    """``remove(bulk=False)`` saves copies of the rows it loads itself: the object given is as stale."""
    review, b1, _ = moved_review
    audit_records.clear()

    b1.reviews.remove(review, bulk=False)
    assert Review.objects.get(pk=review.pk).book_id is None and review.book_id == b1.pk
    review.save()

    assert Review.objects.get(pk=review.pk).book_id == b1.pk
    assert crud(audit_records) == [
        record("UPDATE", "Review", review.pk, {"book": {"old": b1.pk, "new": None}}),
        record("UPDATE", "Review", review.pk, {"book": {"old": None, "new": b1.pk}}),
    ]


def test_save_after_a_generic_relation_add_records_only_what_the_save_changed(audit_records):
    first, second = Board.objects.create(name="first"), Board.objects.create(name="second")
    note = Note.objects.get(pk=first.notes.create(text="hello").pk)
    audit_records.clear()

    with audit_context(actor="user:admin", request_id="req-move"):
        second.notes.add(note)
    with audit_context(actor="user:editor", request_id="req-edit"):
        note.text = "hello again"
        note.save()

    assert Note.objects.get(pk=note.pk).object_id == second.pk
    moves, edits = crud(audit_records, event_type="QUERYSET_UPDATE"), crud(audit_records, event_type="UPDATE")
    assert [(r["model"], r["values"], r["pks"], r["actor"]) for r in moves] == [
        ("Note", {"content_type": note.content_type_id, "object_id": second.pk}, [note.pk], "user:admin")
    ]
    assert edits == [
        record(
            "UPDATE",
            "Note",
            note.pk,
            {"text": {"old": "hello", "new": "hello again"}},
            actor="user:editor",
            request_id="req-edit",
        )
    ]
