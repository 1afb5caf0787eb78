"""A save undone by a rollback leaves the instance with its new values (Django's behaviour): saving them
again is a real change, and is recorded against what the row holds."""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.crud_helpers import crud, record
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def renamed(pk: int, old: str, new: str) -> dict[str, object]:
    return record("UPDATE", "Author", pk, {"name": {"old": old, "new": new}})


def rename(author: Author, name: str) -> None:
    author.name = name
    author.save()


@pytest.fixture
def author(audit_records) -> Author:
    """An author saved as "Ada"; the record of that is cleared."""
    author = Author.objects.create(name="Ada")
    audit_records.clear()
    return author


def test_a_save_retried_after_its_transaction_rolled_back_is_recorded(audit_records, author):
    for attempt in range(2):  # a retry loop, as for a serialization failure or a deadlock
        try:
            with transaction.atomic():
                rename(author, "Grace")
                if attempt == 0:
                    raise Rollback
        except Rollback:
            assert Author.objects.get(pk=author.pk).name == "Ada"

    assert Author.objects.get(pk=author.pk).name == "Grace"
    assert crud(audit_records) == [renamed(author.pk, "Ada", "Grace")]


def test_a_save_retried_after_its_savepoint_rolled_back_is_recorded(audit_records, author):
    with transaction.atomic():
        rename(author, "Grace")  # kept
        try:
            with transaction.atomic():
                rename(author, "Hedy")  # undone
                raise Rollback
        except Rollback:
            pass
        author.save()  # "Hedy" again, for real this time

    assert Author.objects.get(pk=author.pk).name == "Hedy"
    assert crud(audit_records) == [renamed(author.pk, "Ada", "Grace"), renamed(author.pk, "Grace", "Hedy")]


def test_every_save_of_a_rolled_back_transaction_is_undone(audit_records, author):
    with pytest.raises(Rollback), transaction.atomic():
        rename(author, "Grace")
        rename(author, "Hedy")
        raise Rollback
    author.save()  # "Hedy", in autocommit

    assert crud(audit_records) == [renamed(author.pk, "Ada", "Hedy")]


def test_saves_of_a_committed_transaction_stay_done(audit_records, author):
    with transaction.atomic():
        rename(author, "Grace")
    with pytest.raises(Rollback), transaction.atomic():
        rename(author, "Hedy")
        raise Rollback
    author.name = "Grace"  # what the row holds: no change
    author.save()

    assert crud(audit_records) == [renamed(author.pk, "Ada", "Grace")]


def test_a_refresh_after_a_rollback_takes_the_row_as_it_is(audit_records, author):
    with pytest.raises(Rollback), transaction.atomic():
        rename(author, "Grace")
        raise Rollback
    Author.objects.filter(pk=author.pk).update(name="Lin")  # another writer
    author.refresh_from_db()
    rename(author, "Grace")

    assert [r["event_type"] for r in crud(audit_records)] == ["QUERYSET_UPDATE", "UPDATE"]
    assert crud(audit_records, event_type="UPDATE") == [renamed(author.pk, "Lin", "Grace")]


def test_a_delete_after_a_rolled_back_save_records_what_the_row_held(audit_records, author):
    with pytest.raises(Rollback), transaction.atomic():
        rename(author, "Grace")
        raise Rollback
    pk = author.pk
    author.delete()

    assert crud(audit_records) == [record("DELETE", "Author", pk, {"name": {"old": "Ada", "new": None}})]


def test_a_bulk_update_retried_after_its_transaction_rolled_back_is_recorded(audit_records):
    first, second = Author.objects.create(name="Ada"), Author.objects.create(name="Lin")
    audit_records.clear()
    first.name, second.name = "Grace", "Hedy"
    with pytest.raises(Rollback), transaction.atomic():
        Author.objects.bulk_update([first, second], ["name"])
        raise Rollback
    first.save()  # "Grace", in autocommit: the row still holds "Ada"

    assert crud(audit_records) == [renamed(first.pk, "Ada", "Grace")]


def test_a_refresh_inside_a_transaction_that_rolls_back_is_undone_with_it(audit_records, author):
    for attempt in range(2):
        try:
            with transaction.atomic():
                rename(author, "Grace")
                author.refresh_from_db()  # reads the row as the transaction left it
                if attempt == 0:
                    raise Rollback
        except Rollback:
            assert Author.objects.get(pk=author.pk).name == "Ada"

    assert Author.objects.get(pk=author.pk).name == "Grace"
    assert crud(audit_records) == [renamed(author.pk, "Ada", "Grace")]


def test_a_deferred_field_read_inside_a_transaction_that_rolls_back_is_undone_with_it(audit_records):
    book = Book.objects.create(title="Dune", pages=412, author=Author.objects.create(name="Frank"))
    book = Book.objects.only("title").get(pk=book.pk)
    audit_records.clear()
    for attempt in range(2):
        try:
            with transaction.atomic():
                book.title = "Dune Messiah"
                book.save()
                assert book.pages == 412  # a deferred field: read from the row by refresh_from_db
                if attempt == 0:
                    raise Rollback
        except Rollback:
            assert Book.objects.get(pk=book.pk).title == "Dune"

    assert Book.objects.get(pk=book.pk).title == "Dune Messiah"
    (update,) = crud(audit_records)
    assert update["changes"]["title"] == {"old": "Dune", "new": "Dune Messiah"}
    # read only inside the transaction that rolled back: not known to be what the row held
    assert update["changes"]["pages"] == {"old": None, "new": 412, "old_unknown": True}


def test_a_refresh_inside_a_transaction_that_commits_stays(audit_records, author):
    with transaction.atomic():
        Author.objects.filter(pk=author.pk).update(name="Grace")
        author.refresh_from_db()
    audit_records.clear()

    rename(author, "Hedy")

    assert crud(audit_records) == [renamed(author.pk, "Grace", "Hedy")]


def test_a_refresh_undone_by_a_rollback_leaves_what_it_read_unknown(audit_records, author):
    """The refresh may have read another transaction's committed change: after the rollback the row still
    holds it, so going back to the value loaded before would blame the next save for that change."""
    Author.objects.filter(pk=author.pk).update(name="Grace")  # another writer, committed
    audit_records.clear()
    with pytest.raises(Rollback), transaction.atomic():
        author.refresh_from_db()  # reads "Grace"
        raise Rollback

    author.save()  # writes "Grace" again

    assert crud(audit_records) == [
        record("UPDATE", "Author", author.pk, {"name": {"old": None, "new": "Grace", "old_unknown": True}})
    ]
