"""Bulk writes at their edges: field settings in either spelling, rows Django changes for ``on_delete``,
``bulk_update()`` of a filtered queryset, and the snapshots of objects a related manager moved."""

from __future__ import annotations

import pytest
from django.db import models, transaction

from tests.crud_helpers import audit_settings, bulk, crud
from tests.testapp.models import Author, Book, Review

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
