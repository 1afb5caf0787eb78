"""Bulk writes at their edges: field settings in either spelling, rows Django changes for ``on_delete``,
``bulk_update()`` of a filtered queryset, and the snapshots of objects a related manager moved."""

from __future__ import annotations

import pytest

from tests.crud_helpers import audit_settings, bulk, crud
from tests.testapp.models import Author, Book

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
