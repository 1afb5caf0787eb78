"""Values of the right type that the database stores in another form: records show what the row holds."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test import override_settings

from tests.crud_helpers import book_values, bulk, crud, record
from tests.testapp.models import Author, Book, Device

pytestmark = pytest.mark.django_db(transaction=True)

NAIVE = dt.datetime(2026, 1, 2, 3, 4, 5)  # the test settings' TIME_ZONE is Django's default, America/Chicago
STORED = "2026-01-02T09:04:05+00:00"
SERIAL = uuid.UUID("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90")


def test_a_naive_datetime_is_recorded_as_the_instant_stored(audit_records):
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        device = Device.objects.create(serial=SERIAL, seen_at=NAIVE)
    loaded = Device.objects.get(pk=SERIAL)
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        loaded.seen_at = NAIVE  # the same wall time again: the row does not change
        loaded.save()
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        loaded.seen_at = "2026-01-02 04:04:05"  # a string is read in the default time zone too
        loaded.save()

    assert loaded.__class__.objects.get(pk=SERIAL).seen_at.isoformat() == "2026-01-02T10:04:05+00:00"
    created, updated = crud(audit_records)
    assert created["instance_id"] == str(device.pk)
    assert created["changes"]["seen_at"] == {"old": None, "new": STORED}
    assert updated == record(
        "UPDATE",
        "Device",
        SERIAL,
        {"seen_at": {"old": STORED, "new": "2026-01-02T10:04:05+00:00"}},
    )


def test_ip_addresses_are_recorded_normalised_as_stored(audit_records):
    device = Device.objects.create(
        serial=SERIAL, address="2001:0DB8:0000::0001", address_v4="::ffff:10.0.0.1"
    )
    loaded = Device.objects.get(pk=SERIAL)
    loaded.address = "2001:DB8:0::1"  # the same address, spelled otherwise: no change
    loaded.save()
    blank = Device.objects.create(address="")

    assert Device.objects.filter(pk=SERIAL).values_list("address", "address_v4").get() == (
        "2001:db8::1",
        "10.0.0.1",
    )
    assert Device.objects.get(pk=blank.pk).address is None
    created, created_blank = crud(audit_records)
    assert created["instance_id"] == str(device.pk)
    assert created["changes"]["address"] == {"old": None, "new": "2001:db8::1"}
    assert created["changes"]["address_v4"] == {"old": None, "new": "10.0.0.1"}
    assert created_blank["changes"]["address"] == {"old": None, "new": None}


def test_binary_data_changed_in_place_is_recorded(audit_records):
    device = Device.objects.create(serial=SERIAL, firmware=bytearray(b"abc"))
    device.firmware[0] = ord("X")  # the very buffer saved a moment ago
    device.save()

    assert bytes(Device.objects.get(pk=SERIAL).firmware) == b"Xbc"
    created, updated = crud(audit_records)
    assert created["changes"]["firmware"] == {"old": None, "new": "abc"}
    assert updated == record("UPDATE", "Device", SERIAL, {"firmware": {"old": "abc", "new": "Xbc"}})


def test_a_pk_given_in_another_spelling_is_recorded_as_stored(audit_records):
    device = Device.objects.create(serial="A1B2C3D4E5F60718293A4B5C6D7E8F90")
    device.address = "10.0.0.2"
    device.save()
    Device.objects.bulk_create([Device(serial="B1B2C3D4E5F60718293A4B5C6D7E8F90")])

    assert Device.objects.filter(pk=SERIAL).exists()
    created, updated, bulk_created = crud(audit_records)
    assert created["instance_id"] == updated["instance_id"] == str(SERIAL)
    assert created["message"] == f"CREATE event for Device (id: {SERIAL})"
    assert bulk_created["pks"] == [str(uuid.UUID("b1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90"))]


def test_values_set_by_update_are_recorded_as_the_rows_hold_them(audit_records):
    author, other = Author.objects.create(name="Frank"), Author.objects.create(name="Brian")
    book = Book.objects.create(author=author, **book_values())
    audit_records.clear()

    with pytest.warns(RuntimeWarning, match="naive datetime"):
        Book.objects.filter(pk=book.pk).update(
            price=Decimal("19.999"), in_print=0, author=other, last_sold_at=NAIVE
        )

    stored = Book.objects.get(pk=book.pk)
    assert (stored.price, stored.in_print, stored.author_id) == (Decimal("20.00"), False, other.pk)
    assert stored.last_sold_at.isoformat() == STORED
    assert crud(audit_records) == [
        bulk(
            "QUERYSET_UPDATE",
            "Book",
            1,
            operation="update",
            values={"price": "20.00", "in_print": False, "author": other.pk, "last_sold_at": STORED},
            pks=[book.pk],
        )
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL stores a float NaN")
def test_a_float_nan_saved_again_is_no_change(audit_records):
    author = Author.objects.create(name="Frank")
    book = Book.objects.create(author=author, **book_values(rating=float("nan")))
    loaded = Book.objects.get(pk=book.pk)
    audit_records.clear()

    loaded.rating = float("nan")
    loaded.save()

    assert math.isnan(Book.objects.get(pk=book.pk).rating)
    assert crud(audit_records) == []


def test_json_with_a_custom_encoder_is_recorded_as_that_encoder_stores_it(audit_records):
    taken = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
    Device.objects.create(serial=SERIAL, readings={"at": taken, "volts": Decimal("3.30")})
    loaded = Device.objects.get(pk=SERIAL)
    loaded.readings = {"at": taken, "volts": Decimal("3.30")}  # the same values again: the row is unchanged
    loaded.save()

    stored = {"at": "2026-01-02T03:04:05.123Z", "volts": "3.30"}
    assert Device.objects.get(pk=SERIAL).readings == stored
    (created,) = crud(audit_records)
    assert created["changes"]["readings"] == {"old": None, "new": stored}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the other databases refuse aware datetimes here"
)
def test_without_use_tz_an_aware_datetime_is_recorded_as_the_local_time_stored(audit_records):
    with override_settings(USE_TZ=False):
        Device.objects.create(serial=SERIAL, seen_at=dt.datetime(2026, 1, 1, 21, 4, 5))
        loaded = Device.objects.get(pk=SERIAL)
        loaded.seen_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)  # 21:04:05 in Chicago
        loaded.save()

        assert Device.objects.get(pk=SERIAL).seen_at == dt.datetime(2026, 1, 1, 21, 4, 5)
    (created,) = crud(audit_records)
    assert created["changes"]["seen_at"] == {"old": None, "new": "2026-01-01T21:04:05"}


def test_a_file_field_set_from_an_expression_records_the_expression(audit_records):
    """``F("summary")`` has a ``name`` ("summary") like a file: the record must not take it for one."""
    author = Author.objects.create(name="a")
    book = Book.objects.create(title="t", summary="covers/from-summary.png", author=author)
    audit_records.clear()

    Book.objects.filter(pk=book.pk).update(cover=F("summary"))

    assert Book.objects.get(pk=book.pk).cover.name == "covers/from-summary.png"
    [updated] = crud(audit_records)
    assert updated["values"] == {"cover": "F(summary)"}
