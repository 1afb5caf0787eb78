"""``audit_crud_event``: a plugin enriches records and vetoes some, on commit."""

from __future__ import annotations

import pytest
from django.db import transaction

from activity_audit.manager import register_plugin, unregister_plugin
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
