"""Relations whose rows Django reads or writes in a less common way: a foreign key to another field than the
primary key, a related model whose default manager hides rows, upserts of loaded objects."""

from __future__ import annotations

import pytest

from tests.crud_helpers import bulk, crud, record
from tests.testapp.models import Office, Region

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_update_to_a_foreign_key_with_a_to_field_records_the_value_the_row_holds(audit_records):
    europe = Region.objects.create(code="EU", name="Europe")
    usa = Region.objects.create(code="US", name="USA")
    office = Office.objects.create(region=europe, name="Paris")
    audit_records.clear()

    Office.objects.filter(pk=office.pk).update(region=usa)

    assert Office.objects.values_list("region_id", flat=True).get(pk=office.pk) == "US"
    assert crud(audit_records) == [
        bulk("QUERYSET_UPDATE", "Office", 1, operation="update", values={"region": "US"}, pks=[office.pk])
    ]


def test_a_reverse_add_through_a_to_field_records_the_value_the_rows_hold(audit_records):
    europe = Region.objects.create(code="EU", name="Europe")
    usa = Region.objects.create(code="US", name="USA")
    office = Office.objects.get(pk=Office.objects.create(region=europe, name="Rome").pk)
    audit_records.clear()

    usa.offices.add(office)
    office.name = "Roma"
    office.save()

    assert crud(audit_records) == [
        bulk("QUERYSET_UPDATE", "Office", 1, operation="update", values={"region": "US"}, pks=[office.pk]),
        record("UPDATE", "Office", office.pk, {"name": {"old": "Rome", "new": "Roma"}}),
    ]
