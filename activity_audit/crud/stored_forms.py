"""Values of the right Python type that the database still stores in another form.

:mod:`.snapshots` converts a value of the wrong type with ``field.to_python`` (``published="2024-01-02"``).
Some values already have the field's type and are stored differently all the same; a record must show what
the row holds, so a value just saved is passed through the field's *normaliser*:

* ``DateTimeField`` under ``USE_TZ``: a naive datetime is taken in the default time zone (as Django does,
  with a warning) and shown in UTC, as a datetime loaded from the database is; without ``USE_TZ``, an aware
  one is the naive local time of ``TIME_ZONE`` (what PostgreSQL keeps; the other databases refuse it);
* ``GenericIPAddressField``: IPv6 addresses compressed and lower-cased (IPv4-mapped ones unpacked with
  ``unpack_ipv4``), and a blank address stored as NULL;
* ``BinaryField``: a ``bytearray`` or ``memoryview`` copied to ``bytes`` (a snapshot must not share a buffer
  the code may change in place);
* ``JSONField`` with an ``encoder`` (``DjangoJSONEncoder``): the JSON that encoder writes, read back (a
  datetime inside is the encoder's string, ``"2026-01-02T03:04:05.123Z"``), for values loaded too.

A normaliser never raises: a value it cannot handle is kept as given (Django refuses it on save anyway).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

Normaliser = Callable[[Any], Any]


def normaliser_for(field: models.Field[Any, Any]) -> Normaliser | None:
    """The normaliser of ``field``, or None when its values are stored as they are."""
    if isinstance(field, models.DateTimeField):
        return _stored_datetime
    if isinstance(field, models.GenericIPAddressField):
        return _ip_address(field)
    if isinstance(field, models.BinaryField):
        return _bytes
    if isinstance(field, models.JSONField) and field.encoder is not None:
        return _through_encoder(field.encoder)
    return None


def _stored_datetime(value: Any) -> Any:
    if type(value) is not dt.datetime:
        return value
    try:
        if value.tzinfo is None:
            if settings.USE_TZ:
                return timezone.make_aware(value, timezone.get_default_timezone()).astimezone(dt.timezone.utc)
        elif not settings.USE_TZ:  # PostgreSQL keeps it as the local time of TIME_ZONE (others refuse it)
            return timezone.make_naive(value, timezone.get_default_timezone())
    except Exception:
        return value
    return value


def _ip_address(field: models.GenericIPAddressField[Any, Any]) -> Normaliser:
    def normalise(value: Any) -> Any:
        try:
            return field.get_prep_value(value) or None
        except Exception:
            return value

    return normalise


def _through_encoder(encoder: type[json.JSONEncoder]) -> Normaliser:
    def normalise(value: Any) -> Any:
        try:
            return json.loads(json.dumps(value, cls=encoder))
        except Exception:
            return value

    return normalise


def _bytes(value: Any) -> Any:
    return bytes(value) if isinstance(value, (bytearray, memoryview)) else value
