"""Selection settings follow a model's rows and fields: through its proxies and its multi-table children.

A proxy shows the same rows as the model it proxies, under a label of its own; a multi-table child writes its
parent's fields into the parent's table. ``MASK_FIELDS``, ``EXCLUDE_FIELDS``, ``EXCLUDE_MODELS`` and
``INCLUDE_MODELS`` name the model whose rows or fields they mean, and hold wherever those are written.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks

from tests.crud_helpers import audit_settings, crud, record
from tests.testapp.models import ApiClient, ApiClientProxy, Author, Book, BookProxy, PartnerClient

pytestmark = pytest.mark.django_db(transaction=True)

MASKED = {"changed": True, "masked": True}
SECRET = "customer SSN 078-05-1120"


def audit_errors() -> list[checks.CheckMessage]:
    return [message for message in checks.run_checks() if (message.id or "").startswith("activity_audit")]


def test_a_masked_field_is_masked_through_a_proxy(audit_records: Any) -> None:
    with audit_settings(MASK_FIELDS={"testapp.ApiClient": ["notes"]}):
        assert audit_errors() == []
        client = ApiClientProxy.objects.create(name="proxy", api_token="t", notes=SECRET)
        client.notes = "new secret note"
        client.save()
        ApiClientProxy.objects.filter(pk=client.pk).update(notes="another secret")

        created, updated, bulk_updated = crud(audit_records)
    assert created == record(
        "CREATE",
        "ApiClientProxy",
        client.pk,
        {"name": {"old": None, "new": "proxy"}, "api_token": MASKED, "notes": MASKED},  # api_token: its name
    )
    assert updated == record("UPDATE", "ApiClientProxy", client.pk, {"notes": MASKED})
    assert bulk_updated["event_type"] == "QUERYSET_UPDATE"
    assert bulk_updated["values"] == {"notes": MASKED}


def test_a_masked_parent_field_is_masked_through_a_multi_table_child(audit_records: Any) -> None:
    with audit_settings(MASK_FIELDS={"testapp.ApiClient": ["notes"]}):
        assert audit_errors() == []
        partner = PartnerClient.objects.create(name="p", api_token="t", notes=SECRET, partner="acme")

        [created] = crud(audit_records, model="PartnerClient")
    assert created == record(
        "CREATE",
        "PartnerClient",
        partner.pk,
        {
            "name": {"old": None, "new": "p"},
            "api_token": MASKED,
            "notes": MASKED,
            "partner": {"old": None, "new": "acme"},
        },
    )
    assert SECRET not in str(audit_records.records)


def test_an_excluded_field_is_left_out_through_a_proxy(audit_records: Any) -> None:
    with audit_settings(EXCLUDE_FIELDS={"testapp.Book": ["summary"]}):
        author = Author.objects.create(name="a")
        book = BookProxy.objects.create(title="t", summary="private summary", author=author)

        [created] = crud(audit_records, model="BookProxy")
    assert created["instance_id"] == str(book.pk)
    assert "summary" not in created["changes"]
    assert "title" in created["changes"]


def test_an_excluded_model_is_not_audited_through_its_proxy(audit_records: Any) -> None:
    with audit_settings(EXCLUDE_MODELS=["testapp.Book"]):
        author = Author.objects.create(name="a")
        Book.objects.create(title="direct", author=author)
        BookProxy.objects.create(title="through the proxy", author=author)

        assert [(r["model"], r["event_type"]) for r in crud(audit_records)] == [("Author", "CREATE")]


def test_an_included_model_is_audited_through_its_proxy_too(audit_records: Any) -> None:
    with audit_settings(INCLUDE_MODELS=["testapp.Book"]):
        author = Author.objects.create(name="a")  # not included
        Book.objects.create(title="direct", author=author)
        BookProxy.objects.create(title="through the proxy", author=author)

        assert [(r["model"], r["event_type"]) for r in crud(audit_records)] == [
            ("Book", "CREATE"),
            ("BookProxy", "CREATE"),
        ]


def test_settings_of_a_proxy_do_not_reach_the_model_it_proxies(audit_records: Any) -> None:
    with audit_settings(MASK_FIELDS={"testapp.ApiClientProxy": ["notes"]}):
        ApiClient.objects.create(name="plain", api_token="t", notes="visible")
        ApiClientProxy.objects.create(name="proxy", api_token="t", notes="hidden")

        plain, proxied = crud(audit_records)
    assert plain["changes"]["notes"] == {"old": None, "new": "visible"}
    assert proxied["changes"]["notes"] == MASKED
