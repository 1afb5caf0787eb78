"""``audit_crud_event``: a plugin enriches records and vetoes some, on commit."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from activity_audit import audit_context, hookimpl
from activity_audit.manager import register_plugin, unregister_plugin
from activity_audit.testing import registered_plugin
from tests.crud_helpers import audit_settings, crud
from tests.crud_test_plugin import TenantPlugin
from tests.testapp.models import Author, Book, Chapter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tenant_plugin():
    plugin = TenantPlugin("acme")
    register_plugin(plugin, name="tests.tenant")
    yield plugin
    unregister_plugin("tests.tenant")


def test_a_plugin_enriches_and_vetoes(audit_records, tenant_plugin):
    author = Author.objects.create(name="Ann")
    book = Book.objects.create(title="T", author=author)
    with transaction.atomic():
        Chapter.objects.create(book=book, number=1)
        assert tenant_plugin.seen == ["CREATE", "CREATE"]  # the hook runs at commit, not before
    Chapter.objects.all().delete()

    assert tenant_plugin.seen == ["CREATE", "CREATE", "CREATE", "BULK_DELETE"]
    records = crud(audit_records)
    assert [(r["model"], r["extra"]) for r in records] == [
        ("Author", {"tenant": "acme"}),
        ("Book", {"tenant": "acme"}),
    ]


class ChangesReader:
    """Reads the changes the way a project plugin would: as plain dicts, on the caller thread."""

    def __init__(self):
        self.titles = []

    @hookimpl
    def audit_crud_event(self, record):
        if record["model"] == "Book":
            self.titles.append(record["changes"]["title"])


def test_a_hook_sees_the_changes_in_their_final_shape(audit_records):
    reader = ChangesReader()
    author = Author.objects.create(name="Ann")
    with registered_plugin(reader, "tests.changes-reader"):
        book = Book.objects.create(title="Before", author=author)
        book.title = "After"
        book.save()
        book.delete()
    assert reader.titles == [
        {"old": None, "new": "Before"},
        {"old": "Before", "new": "After"},
        {"old": "After", "new": None},
    ]


class Pseudonymise:
    """Changes records in place, as hooks may: the acting user's name, the values and the origin."""

    @hookimpl
    def audit_crud_event(self, record):
        if isinstance(record.get("user"), dict):
            record["user"]["username"] = "#" + record["user"]["username"]
        for key in ("values", "origin"):
            if isinstance(record.get(key), dict):
                record[key]["seen"] = record[key].get("seen", 0) + 1


def test_each_record_of_a_bulk_operation_owns_what_a_plugin_changes_in_place(audit_records):
    admin = User.objects.create(username="admin")
    author = Author.objects.create(name="Ann")
    books = Book.objects.bulk_create([Book(title=f"B{i}", author=author) for i in range(5)])
    author_pk = author.pk
    audit_records.clear()
    plugin = Pseudonymise()
    with (
        audit_settings(BULK_CHUNK_SIZE=2),
        registered_plugin(plugin, "tests.pseudonymise"),
        audit_context(actor=admin),
    ):
        Book.objects.filter(author=author).update(pages=7)
        author.delete()  # cascades to the five books

    records = crud(audit_records)
    assert [(r["event_type"], r.get("part")) for r in records] == [
        ("QUERYSET_UPDATE", {"index": 1, "of": 3}),
        ("QUERYSET_UPDATE", {"index": 2, "of": 3}),
        ("QUERYSET_UPDATE", {"index": 3, "of": 3}),
        ("BULK_DELETE", {"index": 1, "of": 3}),  # the cascade's rows go first, as Django deletes them
        ("BULK_DELETE", {"index": 2, "of": 3}),
        ("BULK_DELETE", {"index": 3, "of": 3}),
        ("DELETE", None),
    ]
    assert [r["user"] for r in records] == [{"id": admin.pk, "username": "#admin"}] * 7
    assert [r["values"] for r in records[:3]] == [{"pages": 7, "seen": 1}] * 3
    assert [r["origin"] for r in records[3:6]] == [
        {"model": "testapp.Author", "instance_id": str(author_pk), "seen": 1}
    ] * 3
    assert sorted(pk for r in records[3:6] for pk in r["pks"]) == [book.pk for book in books]
