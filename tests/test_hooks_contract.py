"""The hook contract: every hook is documented and tested, and each behaves as its docstring says.

``test_hook_<name>`` is the test of hook ``<name>``; :func:`test_every_hook_has_a_test` keeps that true.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from activity_audit import hookimpl, hookspecs
from activity_audit.dispatch import pipeline
from activity_audit.emit import emit_crud, emit_request
from activity_audit.encoding import dumps_line
from activity_audit.manager import hook_names
from activity_audit.records import CHANNEL_API, CHANNEL_AUDIT, PIPELINE_LOGGER, Entry, new_record
from activity_audit.testing import CapturedRecords, registered_plugin

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "hooks.md"
NAME = "tests.contract"


def contract_record(message: str, **fields: Any) -> dict[str, Any]:
    return new_record("AUDIT", NAME, message, **fields)


def problems(audit_records: CapturedRecords, kind: str, source: str) -> list[dict[str, Any]]:
    return audit_records.of(PIPELINE_LOGGER, event_type=kind, source=source)


def only_mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record.get("name") == NAME]


# --- the contract is complete -------------------------------------------------------------------------------


def hook_signature(name: str) -> str:
    arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    return f"{name}({arguments})"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented(name: str) -> None:
    headings = re.findall(r"^## `([^`]+)`", DOCS.read_text(), flags=re.MULTILINE)
    assert hook_signature(name) in headings


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_test(name: str) -> None:
    sources = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    assert f"def test_hook_{name}(" in sources


def test_every_hook_has_a_docstring_contract() -> None:
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "thread" in doc.lower(), f"{name}: the docstring must say on which thread it is called"
        assert "raise" in doc.lower() or "exception" in doc.lower(), (
            f"{name}: and what happens when it raises"
        )


# --- order and threads --------------------------------------------------------------------------------------


class Recorder:
    """Notes which hook saw a contract record, in which order, on which thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def note(self, hook: str, record: dict[str, Any]) -> None:
        if record.get("name") == NAME:
            with self._lock:
                self.calls.append((hook, threading.current_thread().name))

    @hookimpl
    def audit_crud_event(self, record: dict[str, Any]) -> None:
        self.note("audit_crud_event", record)

    @hookimpl
    def audit_request(self, record: dict[str, Any]) -> None:
        self.note("audit_request", record)

    @hookimpl
    def redact(self, record: dict[str, Any]) -> None:
        self.note("redact", record)

    @hookimpl
    def format_record(self, record: dict[str, Any]) -> None:
        self.note("format_record", record)

    @hookimpl
    def sink(self, records: Sequence[Entry]) -> None:
        for entry in records:
            self.note("sink", entry.record)


@pytest.mark.parametrize(
    ("emit", "capture_hook"), [(emit_crud, "audit_crud_event"), (emit_request, "audit_request")]
)
def test_order_is_audit_hook_then_redact_then_format_record_then_sink(emit: Any, capture_hook: str) -> None:
    recorder = Recorder()
    with registered_plugin(recorder, name="tests.recorder"):
        assert emit(contract_record("order"))
    assert recorder.calls == [
        (capture_hook, threading.current_thread().name),
        ("redact", "activity-audit-worker"),
        ("format_record", "activity-audit-worker"),
        ("sink", "activity-audit-sink:tests.recorder"),
    ]


# --- one test per hook --------------------------------------------------------------------------------------


def test_hook_audit_configure(tmp_path: Path) -> None:
    seen: list[str] = []

    class Configurable:
        @hookimpl
        def audit_configure(self, settings: Any) -> None:
            seen.append(settings.SERVICE_NAME)
            if settings.SERVICE_NAME == "refused":
                raise ImproperlyConfigured("ACTIVITY_AUDIT['PLUGINS']['configurable'] is missing 'bucket'.")

    base = dict(settings.ACTIVITY_AUDIT)
    with registered_plugin(Configurable(), name="tests.configurable"):
        assert seen == ["tests"]  # a plugin registered late is configured at once
        with override_settings(ACTIVITY_AUDIT={**base, "SERVICE_NAME": "configured"}):
            assert seen == ["tests", "configured"]  # and again on every reload
        assert seen == ["tests", "configured", "tests"]
        with (
            pytest.raises(
                ImproperlyConfigured, match=r"^ACTIVITY_AUDIT\['PLUGINS'\]\['configurable'\] is missing"
            ),
            override_settings(ACTIVITY_AUDIT={**base, "SERVICE_NAME": "refused"}),
        ):
            pass


def test_hook_audit_crud_event(audit_records: CapturedRecords) -> None:
    class Enricher:
        @hookimpl
        def audit_crud_event(self, record: dict[str, Any]) -> bool | None:
            if record["message"] == "veto me":
                return False
            record["tenant"] = "acme"
            return None

    class Broken:
        @hookimpl
        def audit_crud_event(self, record: dict[str, Any]) -> None:
            raise RuntimeError(f"enricher bug on {record['message']}")  # a value of the unredacted record

    with (
        registered_plugin(Enricher(), name="tests.enricher"),
        registered_plugin(Broken(), name="tests.broken"),
    ):
        first = contract_record("kept")
        assert emit_crud(first)
        assert emit_crud(contract_record("veto me")) is False
        second = contract_record("kept too")
        assert emit_crud(second)
    mine = only_mine(audit_records.records)
    assert [(r["message"], r["tenant"], r["seq"]) for r in mine] == [
        ("kept", "acme", first["seq"]),
        ("kept too", "acme", first["seq"] + 1),  # a veto spends no sequence number
    ]
    assert second["seq"] == first["seq"] + 1
    [failure] = problems(audit_records, "HOOK_FAILED", "audit_crud_event:tests.broken")
    line = Broken.audit_crud_event.__code__.co_firstlineno + 2
    error = f"RuntimeError in audit_crud_event (test_hooks_contract.py:{line})"  # where, not the message
    assert (failure["occurrences"], failure["lost"], failure["error"]) == (1, 0, error)


def test_hook_audit_request(audit_records: CapturedRecords) -> None:
    class Enricher:
        @hookimpl
        def audit_request(self, record: dict[str, Any]) -> bool | None:
            if record["message"] == "health check":
                return False
            record["route"] = "orders"
            return None

    with registered_plugin(Enricher(), name="tests.request-enricher"):
        assert emit_request(new_record("API", NAME, "order placed"))
        assert emit_request(new_record("API", NAME, "health check")) is False
    mine = [(entry.channel, orjson.loads(entry.line)) for entry in audit_records.entries]
    assert [(channel, r["message"], r["route"]) for channel, r in mine if r.get("name") == NAME] == [
        (CHANNEL_API, "order placed", "orders")
    ]


def test_hook_redact(audit_records: CapturedRecords) -> None:
    class MaskCard:
        @hookimpl
        def redact(self, record: dict[str, Any]) -> None:
            if "card" in record:
                record["card"] = "****"
                record.setdefault("redacted", []).append("card")

    class Faulty:
        @hookimpl
        def redact(self, record: dict[str, Any]) -> None:
            if record.get("message") == "poison":
                raise ValueError("cannot parse")

    with registered_plugin(MaskCard(), name="tests.mask"), registered_plugin(Faulty(), name="tests.faulty"):
        masked = contract_record("pay", card="4111111111111111")
        poisoned = contract_record("poison", card="4111111111111111", secret="x")
        emit_crud(masked)
        emit_crud(poisoned)
    by_message = {r["message"]: r for r in only_mine(audit_records.records)}
    assert by_message["pay"]["card"] == "****"
    assert by_message["pay"]["redacted"] == ["card"]
    withheld = [r for r in only_mine(audit_records.records) if r["event_id"] == poisoned["event_id"]]
    assert withheld == [
        {
            "timestamp": poisoned["timestamp"].isoformat(),
            "level": "AUDIT",
            "name": NAME,
            "event_id": poisoned["event_id"],
            "stream_id": poisoned["stream_id"],
            "seq": poisoned["seq"],
            "message": "record withheld: a redactor failed on it",
            "redaction_failed": "tests.faulty",
        }
    ]
    [report] = problems(audit_records, "REDACTION_FAILED", "tests.faulty")
    envelope = {"timestamp", "event_id", "stream_id", "seq"}
    assert {key: value for key, value in report.items() if key not in envelope} == {
        "level": "ERROR",
        "name": PIPELINE_LOGGER,
        "message": "redaction failed: tests.faulty",
        "event_type": "REDACTION_FAILED",
        "source": "tests.faulty",
        "occurrences": 1,
        "lost": 0,
        "lost_in_stream": 0,
        "error": "ValueError",  # the type only: the message might quote the secret it choked on
    }


def test_hook_format_record(audit_records: CapturedRecords) -> None:
    class Custom:
        @hookimpl
        def format_record(self, record: dict[str, Any]) -> bytes | None:
            message = record.get("message")
            if message == "custom":
                return orjson.dumps({"custom": True, "seq": record["seq"]})
            if message == "separator":
                return b'{"text":"a\xe2\x80\xa8b"}'  # a raw U+2028 is escaped, not a line break
            if message == "raises":
                raise RuntimeError("formatter bug")
            if message == "two lines":
                return b'{"a":1}\n{"b":2}'
            if message == "vertical tab":
                return b'{"a":"\x0b"}'
            if message == "text":
                return '{"not": "bytes"}'  # type: ignore[return-value]
            if message == "empty":
                return b""
            if message == "latin-1":
                return '{"name": "café"}'.encode("latin-1")
            return None  # defer to the next formatter (the built-in)

    with registered_plugin(Custom(), name="tests.formatter"):
        sent = {
            m: contract_record(m)
            for m in (
                "custom",
                "separator",
                "raises",
                "two lines",
                "vertical tab",
                "text",
                "empty",
                "latin-1",
                "plain",
            )
        }
        for record in sent.values():
            emit_crud(record)
    lines = {entry.record.get("message"): entry.line for entry in audit_records.entries}
    assert lines["custom"] == orjson.dumps({"custom": True, "seq": sent["custom"]["seq"]})
    assert lines["separator"] == b'{"text":"a\\u2028b"}'
    for fallback in ("raises", "two lines", "vertical tab", "text", "empty", "latin-1", "plain"):
        assert lines[fallback] == dumps_line(sent[fallback]), fallback
    reports = problems(audit_records, "FORMAT_FAILED", "tests.formatter")
    assert [(r["occurrences"], r["error"]) for r in reports] == [(1, "RuntimeError: formatter bug")]


def test_hook_sink(audit_records: CapturedRecords) -> None:
    batches: list[Sequence[Entry]] = []

    class Collecting:
        @hookimpl
        def sink(self, records: Sequence[Entry]) -> None:
            batches.append(list(records))

    class Failing:
        @hookimpl
        def sink(self, records: Sequence[Entry]) -> None:
            raise ConnectionError("store is down")

    with (
        registered_plugin(Collecting(), name="tests.collecting"),
        registered_plugin(Failing(), name="tests.failing"),
    ):
        # Whatever was in flight while the two sinks were being registered reached only the first one.
        pipeline.flush(10)
        batches.clear()
        lost_before = pipeline.stats()["sinks"]["tests.failing"]["lost"]
        delivered_before = pipeline.stats()["sinks"]["tests.collecting"]["delivered"]
        sent = [contract_record(f"r{i}") for i in range(250)]
        for record in sent:
            emit_crud(record)
        pipeline.flush(10)
        pipeline.flush(10)  # and the SINK_FAILED report the first failure queued meanwhile
        stats = pipeline.stats()["sinks"]
        received = [entry for batch in batches for entry in batch]
        assert stats["tests.failing"]["lost"] - lost_before == len(received)
        assert stats["tests.failing"]["delivered"] == 0
        # (the failing sink's own SINK_FAILED report may still be on its way: count only what is settled)
        collecting = stats["tests.collecting"]
        assert collecting["delivered"] - delivered_before >= len(received)
        assert (collecting["lost"], collecting["failures"]) == (0, 0)
    mine = [entry for entry in received if entry.record.get("name") == NAME]
    assert [entry.record["seq"] for entry in mine] == [record["seq"] for record in sent]
    assert all(isinstance(entry, Entry) and entry.channel == CHANNEL_AUDIT for entry in mine)
    assert all(orjson.loads(entry.line)["event_id"] == entry.record["event_id"] for entry in mine)
    # the other sinks keep getting everything, and the failure is reported once, with the plugin's name
    assert [r["seq"] for r in only_mine(audit_records.records)] == [record["seq"] for record in sent]
    [report] = problems(audit_records, "SINK_FAILED", "tests.failing")
    assert report["error"] == "ConnectionError: store is down"


def test_hook_audit_shutdown(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    class Closing:
        @hookimpl
        def audit_shutdown(self) -> None:
            calls.append("closed")

    class Broken:
        @hookimpl
        def audit_shutdown(self) -> None:
            raise OSError("socket already closed")

    with (
        registered_plugin(Closing(), name="tests.closing"),
        registered_plugin(Broken(), name="tests.broken-close"),
    ):
        emit_crud(contract_record("before shutdown"))
        pipeline.reset_for_tests()  # shutdown, then a fresh stream
    assert calls == ["closed"]
    assert (
        "audit_shutdown of tests.broken-close failed: OSError: socket already closed"
        in capsys.readouterr().err
    )


def test_an_audit_shutdown_raising_a_base_exception_lets_the_others_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []

    class Closing:
        @hookimpl
        def audit_shutdown(self) -> None:
            calls.append("closed")

    class Cancelled:
        @hookimpl
        def audit_shutdown(self) -> None:
            raise asyncio.CancelledError

    with (
        registered_plugin(Closing(), name="tests.closing"),
        registered_plugin(Cancelled(), name="tests.cancelled-close"),
    ):
        pipeline.reset_for_tests()  # shutdown, then a fresh stream
    assert calls == ["closed"]
    assert "audit_shutdown of tests.cancelled-close failed: CancelledError" in capsys.readouterr().err


def test_hook_audit_after_fork() -> None:
    calls: list[int] = []

    class ForkAware:
        @hookimpl
        def audit_after_fork(self) -> None:
            calls.append(os.getpid())

    with registered_plugin(ForkAware(), name="tests.fork-aware"):
        emit_crud(contract_record("before fork"))
        parent_stream = pipeline.stream_id
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it saw, then leave without running the parent's atexit hooks
            try:
                seen = calls == [os.getpid()] and pipeline.stream_id != parent_stream
                os.write(write_end, b"ok" if seen else repr((calls, os.getpid())).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        child_report = os.read(read_end, 1000)
        os.close(read_end)
        os.waitpid(pid, 0)
    assert child_report == b"ok"
    assert calls == []  # the parent is untouched


# --- wrappers -----------------------------------------------------------------------------------------------


def test_wrappers_on_redact_and_format_record_are_honoured(audit_records: CapturedRecords) -> None:
    class Masking:
        @hookimpl
        def redact(self, record: dict[str, Any]) -> None:
            if record.get("name") == NAME:
                record["colour"] = "****"

    class Wrapping:
        @hookimpl(wrapper=True)
        def redact(self, record: dict[str, Any]) -> Any:
            if record.get("name") == NAME:
                record["seen_before"] = record["colour"]
            result = yield
            if record.get("name") == NAME:
                record["seen_after"] = record["colour"]
            return result

        @hookimpl(hookwrapper=True)
        def format_record(self, record: dict[str, Any]) -> Any:
            outcome = yield
            line = outcome.get_result()
            if record.get("name") == NAME:
                outcome.force_result(line[:-1] + b',"wrapped":true}')

    with (
        registered_plugin(Masking(), name="tests.masking"),
        registered_plugin(Wrapping(), name="tests.wrapping"),
    ):
        emit_crud(contract_record("wrapped", colour="abc"))
    [written] = only_mine(audit_records.records)
    assert (written["colour"], written["seen_before"], written["seen_after"], written["wrapped"]) == (
        "****",
        "abc",
        "****",
        True,
    )


# --- the documented example ---------------------------------------------------------------------------------


def test_the_complete_example_in_the_docs_works(tmp_path: Path, audit_records: CapturedRecords) -> None:
    text = DOCS.read_text()
    section = text[text.index("## A complete example") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    package = tmp_path / "docs_example"
    package.mkdir()
    (package / "daily_audit.py").write_text(code)
    sys.path.insert(0, str(package))
    daily = tmp_path / "daily"
    base = dict(settings.ACTIVITY_AUDIT)
    try:
        with override_settings(
            ACTIVITY_AUDIT={
                **base,
                "HOOKS_MODULES": ["daily_audit"],
                "PLUGINS": {"daily_files": {"directory": str(daily)}},
            }
        ):
            record = contract_record("kept twice")
            emit_crud(record)
            emit_request(new_record("API", NAME, "not an audit record"))
            pipeline.flush(10)
            [path] = daily.iterdir()
            copied = [orjson.loads(line) for line in path.read_bytes().splitlines()]
            assert record["event_id"] in [r["event_id"] for r in copied]
            assert "not an audit record" not in [r["message"] for r in copied]
        with (
            pytest.raises(ImproperlyConfigured, match=r"\['daily_files'\]\['directory'\] is required"),
            override_settings(ACTIVITY_AUDIT={**base, "HOOKS_MODULES": ["daily_audit"]}),
        ):
            pass
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("daily_audit", None)


def test_a_base_exception_from_a_plugin_is_a_failure_like_any_other(audit_records: CapturedRecords) -> None:
    """``asyncio.CancelledError`` or ``SystemExit`` from a plugin must not end the worker or a sink thread."""
    import asyncio

    class CancelledFormat:
        @hookimpl
        def format_record(self, record: dict[str, Any]) -> bytes | None:
            if record.get("message") == "cancel in format":
                raise asyncio.CancelledError
            return None

    class ExitingSink:
        @hookimpl
        def sink(self, records: Sequence[Entry]) -> None:
            if any(entry.record.get("message") == "exit in sink" for entry in records):
                raise SystemExit(3)

    with (
        registered_plugin(CancelledFormat(), name="tests.cancelled-format"),
        registered_plugin(ExitingSink(), name="tests.exiting-sink"),
    ):
        assert pipeline.flush(10)
        lost_before = pipeline.stats()["sinks"]["tests.exiting-sink"]["lost"]
        sent = [contract_record(message) for message in ("cancel in format", "exit in sink", "after")]
        for record in sent:
            emit_crud(record)
            assert pipeline.flush(10)  # one batch each: only the failing one is lost to the sink
        assert pipeline.flush(10)
        sink_stats = pipeline.stats()["sinks"]["tests.exiting-sink"]
    assert pipeline._worker is not None and pipeline._worker.is_alive()
    lines = {
        entry.record["message"]: entry.line
        for entry in audit_records.entries
        if entry.record.get("name") == NAME
    }
    assert lines == {record["message"]: dumps_line(record) for record in sent}
    assert sink_stats["lost"] - lost_before == 1
    [format_failed] = problems(audit_records, "FORMAT_FAILED", "tests.cancelled-format")
    assert format_failed["error"] == "CancelledError: "
    [sink_failed] = problems(audit_records, "SINK_FAILED", "tests.exiting-sink")
    assert (sink_failed["lost"], sink_failed["error"]) == (1, "SystemExit: 3")


def test_a_failure_is_blamed_on_its_plugin_when_a_wrapper_calls_the_hook(
    audit_records: CapturedRecords,
) -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def redact(self, record: dict[str, Any]) -> Any:
            return (yield)

    class Faulty:
        @hookimpl
        def redact(self, record: dict[str, Any]) -> None:
            if record.get("message") == "poison":
                raise ValueError("cannot parse")

    with (
        registered_plugin(Faulty(), name="tests.faulty"),
        registered_plugin(Wrapping(), name="tests.wrapping"),
    ):
        poisoned = contract_record("poison")
        emit_crud(poisoned)
    [withheld] = [r for r in only_mine(audit_records.records) if r["event_id"] == poisoned["event_id"]]
    assert withheld["redaction_failed"] == "tests.faulty"
    [report] = problems(audit_records, "REDACTION_FAILED", "tests.faulty")
    assert report["error"] == "ValueError"


def test_a_wrong_value_returned_through_a_wrapper_is_blamed_on_the_formatters_that_may_have_returned_it(
    audit_records: CapturedRecords,
) -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def format_record(self, record: dict[str, Any]) -> Any:
            return (yield)

    class TextFormatter:
        @hookimpl
        def format_record(self, record: dict[str, Any]) -> str:
            return "not bytes"

    with (
        registered_plugin(TextFormatter(), name="tests.text-formatter"),
        registered_plugin(Wrapping(), name="tests.wrapping"),
    ):
        record = contract_record("formatted")
        emit_crud(record)
    [written] = [r for r in only_mine(audit_records.records) if r["event_id"] == record["event_id"]]
    assert written["message"] == "formatted"  # the built-in encoder took over
    culprits = "one of tests.text-formatter, activity_audit.plugins.json_formatter"
    [report] = problems(audit_records, "FORMAT_FAILED", culprits)
    assert report["error"] == "format_record must return one line of bytes"
