"""``activity_audit.testing``: capture records in memory in a project's own tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from activity_audit import hookimpl
from activity_audit.emit import emit_crud, emit_request
from activity_audit.manager import get_plugin_manager
from activity_audit.records import CHANNEL_API, CHANNEL_AUDIT, PIPELINE_LOGGER, new_record
from activity_audit.testing import CapturedRecords, capture_audit, registered_plugin

NAME = "tests.capture"


def send(message: str, **fields: Any) -> dict[str, Any]:
    record = new_record("AUDIT", NAME, message, **fields)
    assert emit_crud(record)
    return record


def test_capture_audit_sees_only_what_happens_inside_the_block() -> None:
    send("before")
    with capture_audit() as captured:
        inside = send("inside", amount=3)
    send("after")
    assert [(r["message"], r["amount"], r["seq"]) for r in captured.records] == [("inside", 3, inside["seq"])]
    assert not [name for name, _ in get_plugin_manager().list_name_plugin() if "capture" in name]


def test_the_fixture_gives_parsed_records_and_helpers(audit_records: CapturedRecords) -> None:
    first = send("one", model="Book")
    second = send("two", model="Author")
    request = new_record("API", "audit.request", "GET /", request_type="internal")
    emit_request(request)

    assert [r["event_id"] for r in audit_records.records] == [
        first["event_id"],
        second["event_id"],
        request["event_id"],
    ]
    assert audit_records.records[0] == {
        "timestamp": first["timestamp"].isoformat(),
        "level": "AUDIT",
        "name": NAME,
        "message": "one",
        "model": "Book",
        "event_id": first["event_id"],
        "stream_id": first["stream_id"],
        "seq": first["seq"],
    }
    assert [r["message"] for r in audit_records.of(NAME, model="Author")] == ["two"]
    assert [r["message"] for r in audit_records.of("audit.request")] == ["GET /"]
    assert [entry.channel for entry in audit_records.entries] == [CHANNEL_AUDIT, CHANNEL_AUDIT, CHANNEL_API]
    audit_records.clear()
    assert audit_records.records == []
    send("three")
    assert [r["message"] for r in audit_records.records] == ["three"]


def test_pipeline_events_are_in_all_records_only(audit_records: CapturedRecords) -> None:
    class Failing:
        @hookimpl
        def sink(self, records: Any) -> None:
            raise OSError("down")

    with registered_plugin(Failing(), name="tests.capture-failing"):
        send("one")
    assert [r["message"] for r in audit_records.records] == ["one"]
    events = [r for r in audit_records.all_records if r["name"] == PIPELINE_LOGGER]
    assert [(e["event_type"], e["source"]) for e in events] == [("SINK_FAILED", "tests.capture-failing")]


def test_capture_survives_override_settings(audit_records: CapturedRecords) -> None:
    with override_settings(ACTIVITY_AUDIT={**settings.ACTIVITY_AUDIT, "SERVICE_NAME": "other"}):
        send("during override")
    send("after override")
    assert [r["message"] for r in audit_records.records] == ["during override", "after override"]


@override_settings(ACTIVITY_AUDIT={**settings.ACTIVITY_AUDIT, "SERVICE_NAME": "decorated"})
def test_capture_works_under_an_override_settings_decorator(audit_records: CapturedRecords) -> None:
    send("decorated")
    assert [r["message"] for r in audit_records.records] == ["decorated"]


def test_registered_plugin_refuses_a_second_plugin_of_the_same_name() -> None:
    class Quiet:
        @hookimpl
        def redact(self, record: dict[str, Any]) -> None:
            pass

    with (
        registered_plugin(Quiet(), name="tests.same"),
        pytest.raises(ValueError, match="already registered"),
        registered_plugin(Quiet(), name="tests.same"),
    ):
        pass
