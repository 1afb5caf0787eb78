"""A snapshot belongs to one row: the database it was read from and the primary key it had.

An instance saved to another database (``save(using=...)``, copying rows between databases) or under another
primary key (one the application chooses, changed to that of another row) writes a row its snapshot does
not describe: its values there were never read, so the record reports them unknown instead of diffing
against the other row's.
"""

from __future__ import annotations

import django
import pytest

from tests.crud_helpers import crud, record
from tests.testapp.models import Code, Replica

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def unknown(**new: object) -> dict[str, dict[str, object]]:
    return {name: {"old": None, "new": value, "old_unknown": True} for name, value in new.items()}


def test_a_row_saved_to_another_database_is_not_diffed_against_the_row_it_was_read_from(audit_records):
    Replica.objects.using("default").create(pk=1, name="A", n=1)
    Replica.objects.using("other").create(pk=1, name="X", n=9)
    copy = Replica.objects.using("default").get(pk=1)
    audit_records.clear()

    copy.save(using="other")  # the row of "other" goes from X/9 to A/1

    assert crud(audit_records) == [record("UPDATE", "Replica", 1, unknown(name="A", n=1), db="other")]
    assert Replica.objects.using("other").values_list("name", "n").get(pk=1) == ("A", 1)


def test_after_that_save_the_snapshot_is_that_of_the_row_written(audit_records):
    Replica.objects.using("default").create(pk=1, name="A", n=1)
    Replica.objects.using("other").create(pk=1, name="X", n=9)
    copy = Replica.objects.using("default").get(pk=1)
    copy.save(using="other")
    audit_records.clear()

    copy.n = 2
    copy.save()  # on "other", where it was saved last
    copy.name = "B"
    copy.save(using="default")  # the row of "default" still holds A/1

    assert crud(audit_records) == [
        record("UPDATE", "Replica", 1, {"n": {"old": 1, "new": 2}}, db="other"),
        record("UPDATE", "Replica", 1, unknown(name="B", n=2), db="default"),
    ]


def test_a_row_deleted_from_another_database_has_its_values_unknown(audit_records):
    Replica.objects.using("default").create(pk=1, name="A", n=1)
    Replica.objects.using("other").create(pk=1, name="Z", n=7)
    read_from_default = Replica.objects.using("default").get(pk=1)
    audit_records.clear()

    read_from_default.delete(using="other")

    assert crud(audit_records) == [
        record("DELETE", "Replica", 1, {}, db="other", old_values_unknown=True),
    ]
    assert Replica.objects.using("default").filter(pk=1).exists()


def test_a_row_deleted_from_the_database_it_was_read_from_keeps_its_values(audit_records):
    Replica.objects.using("other").create(pk=1, name="Z", n=7)
    read_from_other = Replica.objects.using("other").get(pk=1)
    audit_records.clear()

    read_from_other.delete()

    changes = {"name": {"old": "Z", "new": None}, "n": {"old": 7, "new": None}}
    assert crud(audit_records) == [record("DELETE", "Replica", 1, changes, db="other")]


def test_a_primary_key_changed_to_that_of_another_row_is_no_diff_against_the_first_row(audit_records):
    Code.objects.create(code="A", label="label of A")
    Code.objects.create(code="B", label="label of B")
    code = Code.objects.get(pk="A")
    audit_records.clear()

    code.code = "B"
    code.save()  # Django updates row B with the values of A

    assert crud(audit_records) == [record("UPDATE", "Code", "B", unknown(label="label of A"))]
    assert Code.objects.get(pk="B").label == "label of A"
    assert Code.objects.get(pk="A").label == "label of A"  # row A is still there


def test_a_primary_key_changed_to_a_new_one_inserts_a_row(audit_records):
    Code.objects.create(code="A", label="label of A")
    code = Code.objects.get(pk="A")
    audit_records.clear()

    code.code = "C"
    code.save()

    assert crud(audit_records) == [
        record("CREATE", "Code", "C", {"label": {"old": None, "new": "label of A"}}),
    ]


@pytest.mark.skipif(django.VERSION < (5, 2), reason="composite primary keys came with Django 5.2")
def test_a_row_with_a_composite_primary_key_keeps_its_old_values(audit_records):
    from tests.composite.models import Shipment

    Shipment.objects.create(warehouse=1, number=2, status="packed")
    shipment = Shipment.objects.get(warehouse=1, number=2)
    audit_records.clear()

    shipment.status = "sent"
    shipment.save()
    Shipment.objects.get(warehouse=1, number=2).delete()

    instance_id = str((1, 2))
    assert crud(audit_records) == [
        record(
            "UPDATE", "Shipment", instance_id, {"status": {"old": "packed", "new": "sent"}}, app="composite"
        ),
        record(
            "DELETE",
            "Shipment",
            instance_id,
            {
                "warehouse": {"old": 1, "new": None},
                "number": {"old": 2, "new": None},
                "status": {"old": "sent", "new": None},
            },
            app="composite",
        ),
    ]
