"""``audit_crud_event``: a plugin enriches records and vetoes some, on commit."""

from __future__ import annotations

import pytest
from django.db import transaction

from activity_audit import hookimpl
from activity_audit.manager import register_plugin, unregister_plugin
from activity_audit.testing import registered_plugin
from tests.crud_helpers import crud
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
