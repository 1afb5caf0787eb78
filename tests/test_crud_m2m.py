"""Many-to-many changes from either side, with the pks that really changed, recorded once."""

from __future__ import annotations

import pytest

from tests.crud_helpers import crud, record
from tests.testapp.models import Author, Book, Club, Membership, Tag

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def library():
    author = Author.objects.create(name="Ursula")
    book = Book.objects.create(title="Earthsea", author=author)
    tags = [Tag.objects.create(label=label) for label in ("fantasy", "classic", "sea")]
    return book, tags


def m2m(event_type, model, pk, accessor, verb, pks, related):
    return record(event_type, model, pk, {accessor: {verb: pks}}, related_model=f"testapp.{related}")


def test_add_remove_clear_from_the_forward_side(audit_records, library):
    book, (fantasy, classic, sea) = library
    audit_records.clear()

    book.tags.add(fantasy, classic)
    book.tags.add(fantasy)  # already linked: nothing changes, nothing is recorded
    book.tags.remove(classic, sea)  # sea was never linked: only classic is removed
    book.tags.add(sea)
    book.tags.clear()

    assert crud(audit_records) == [
        m2m("M2M_ADD", "Book", book.pk, "tags", "added", sorted([fantasy.pk, classic.pk]), "Tag"),
        m2m("M2M_REMOVE", "Book", book.pk, "tags", "removed", [classic.pk], "Tag"),
        m2m("M2M_ADD", "Book", book.pk, "tags", "added", [sea.pk], "Tag"),
        m2m("M2M_CLEAR", "Book", book.pk, "tags", "cleared", sorted([fantasy.pk, sea.pk]), "Tag"),
    ]


def test_changes_from_the_reverse_side_are_recorded_on_that_side(audit_records, library):
    book, (fantasy, _, _) = library
    audit_records.clear()

    fantasy.books.add(book)
    fantasy.books.remove(book.pk)

    assert crud(audit_records) == [
        m2m("M2M_ADD", "Tag", fantasy.pk, "books", "added", [book.pk], "Book"),
        m2m("M2M_REMOVE", "Tag", fantasy.pk, "books", "removed", [book.pk], "Book"),
    ]


def test_set_is_a_remove_then_an_add(audit_records, library):
    book, (fantasy, classic, sea) = library
    book.tags.set([fantasy, classic])
    audit_records.clear()

    book.tags.set([classic, sea])

    assert crud(audit_records) == [
        m2m("M2M_REMOVE", "Book", book.pk, "tags", "removed", [fantasy.pk], "Tag"),
        m2m("M2M_ADD", "Book", book.pk, "tags", "added", [sea.pk], "Tag"),
    ]


def test_a_custom_through_model_is_recorded_once_per_change(audit_records):
    club = Club.objects.create(name="Readers")
    ann, ben = Author.objects.create(name="Ann"), Author.objects.create(name="Ben")
    audit_records.clear()

    club.members.add(ann, ben, through_defaults={"role": "founder"})
    club.members.remove(ann)
    Membership.objects.create(club=club, author=ann, role="guest")  # a row of its own: CREATE

    records = crud(audit_records)
    assert [(r["event_type"], r["model"]) for r in records] == [
        ("M2M_ADD", "Club"),
        ("M2M_REMOVE", "Club"),
        ("CREATE", "Membership"),
    ]
    assert records[0]["changes"] == {"members": {"added": sorted([ann.pk, ben.pk])}}
    assert records[1]["changes"] == {"members": {"removed": [ann.pk]}}

    audit_records.clear()
    Membership.objects.bulk_create([Membership(club=club, author=ben, role="x")])  # direct: recorded
    assert [(r["event_type"], r["count"]) for r in crud(audit_records)] == [("BULK_CREATE", 1)]


class Refused(Exception):
    pass


def test_an_m2m_change_that_fails_half_way_leaves_later_writes_recorded(audit_records):
    """The link table is marked while a change is under way; a change that raises must not keep the mark."""
    from django.db.models.signals import m2m_changed

    club, author = Club.objects.create(name="Chess"), Author.objects.create(name="Ada")
    membership = Membership.objects.create(club=club, author=author)

    def refuse(action, **kwargs):
        if action == "pre_remove":
            raise Refused

    m2m_changed.connect(refuse, sender=Membership)
    try:
        with pytest.raises(Refused):
            club.members.remove(author)
    finally:
        m2m_changed.disconnect(refuse, sender=Membership)
    audit_records.clear()

    pk = membership.pk
    membership.delete()
    assert [(r["event_type"], r["model"], r["instance_id"]) for r in crud(audit_records)] == [
        ("DELETE", "Membership", str(pk))
    ]


def test_a_symmetrical_relation_to_itself_gives_one_record_per_change(audit_records):
    from tests.testapp.models import Reader

    ged, tenar = Reader.objects.create(name="Ged"), Reader.objects.create(name="Tenar")
    audit_records.clear()

    ged.friends.add(tenar)  # Django also writes the mirror row (tenar -> ged), without a signal
    assert set(tenar.friends.all()) == {ged}
    ged.friends.remove(tenar)

    assert crud(audit_records) == [
        m2m("M2M_ADD", "Reader", ged.pk, "friends", "added", [tenar.pk], "Reader"),
        m2m("M2M_REMOVE", "Reader", ged.pk, "friends", "removed", [tenar.pk], "Reader"),
    ]
