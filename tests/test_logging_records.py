"""App-log and API-level records made from unusual logging calls: nothing the caller asked for is dropped."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest

from activity_audit import API
from activity_audit.logconfig import (
    APIJSONFormatter,
    JSONFormatter,
    PipelineHandler,
    get_api_file_formatter,
    get_api_file_handler,
)
from activity_audit.records import CHANNEL_API
from tests.crud_helpers import audit_settings


class Unprintable:
    """A value whose ``str()`` and ``repr()`` both raise (a model instance with a broken ``__str__``)."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    handler = PipelineHandler()
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("tests.records.app")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)


@pytest.fixture
def api_logger() -> Iterator[logging.Logger]:
    handler = PipelineHandler(channel=CHANNEL_API)
    handler.setFormatter(APIJSONFormatter())
    logger = logging.getLogger("tests.records.api")
    logger.addHandler(handler)
    logger.setLevel(API)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)


def test_a_call_whose_message_and_arguments_cannot_be_printed_still_gives_its_record(
    audit_records: Any, app_logger: logging.Logger
) -> None:
    # Handed to our handler alone: pytest's own log capture would fail the test on the bad format first.
    [handler] = [h for h in app_logger.handlers if isinstance(h, PipelineHandler)]
    for message, args in (("value %d", (Unprintable(),)), (Unprintable(), ()), ("after", ())):
        handler.handle(app_logger.makeRecord(app_logger.name, logging.INFO, __file__, 1, message, args, None))

    messages = [record["message"] for record in audit_records.of("tests.records.app")]
    assert messages == [
        "'value %d' % <tuple whose repr() raised RuntimeError>",
        "<Unprintable whose repr() raised RuntimeError> % ()",
        "after",
    ]


def test_stack_info_asked_for_is_kept(audit_records: Any, app_logger: logging.Logger) -> None:
    app_logger.warning("where am I", stack_info=True)

    [record] = audit_records.of("tests.records.app")
    assert record["stack_info"].startswith("Stack (most recent call last):\n")
    assert "test_stack_info_asked_for_is_kept" in record["stack_info"]


def test_an_api_level_record_keeps_its_exception_and_stack(
    audit_records: Any, api_logger: logging.Logger
) -> None:
    try:
        raise ValueError("partner answered nonsense")
    except ValueError:
        api_logger.log(API, "Audit External Service", exc_info=True, stack_info=True)
    api_logger.log(API, "Audit External Service")

    failed, plain = audit_records.of("tests.records.api")
    assert failed["exception"].startswith("Traceback (most recent call last):\n")
    assert failed["exception"].endswith("ValueError: partner answered nonsense")
    assert failed["stack_info"].startswith("Stack (most recent call last):\n")
    assert "exception" not in plain and "stack_info" not in plain  # the seed's shape when not asked for


def test_the_api_handler_takes_a_level_number_without_a_name(audit_records: Any) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"api_json": get_api_file_formatter()},
            "handlers": {"api_file": get_api_file_handler(level=25, formatter="api_json")},
            "loggers": {"tests.records.numbered": {"handlers": ["api_file"], "level": 1, "propagate": False}},
        }
    )
    logger = logging.getLogger("tests.records.numbered")
    try:
        logger.log(24, "below the handler's level")
        logger.log(25, "at the handler's level")
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)

    assert [record["message"] for record in audit_records.of("tests.records.numbered")] == [
        "at the handler's level"
    ]


@pytest.mark.parametrize(
    ("limits", "message", "extra", "cut"),
    [
        ({"MAX_FIELD_CHARS": 100}, "lorem ipsum " * 500, {}, True),
        ({"MAX_FIELD_CHARS": 50_000}, "dolor sit " * 2_000, {}, False),  # above the built-in 8192
        ({"MAX_ITEMS": 10}, "m", {"ids": list(range(500))}, True),
    ],
)
def test_log_records_are_cut_to_the_capture_settings(
    audit_records: Any,
    app_logger: logging.Logger,
    limits: dict[str, int],
    message: str,
    extra: Any,
    cut: bool,
) -> None:
    with audit_settings(**limits):
        app_logger.warning(message, extra=extra)

        [record] = audit_records.of("tests.records.app")
    assert record.get("truncated", False) is cut
    max_chars = limits.get("MAX_FIELD_CHARS", 8192)
    if len(message) > max_chars:
        kept, marker = record["message"].split("…")
        assert message.startswith(kept) and max_chars - 20 <= len(kept) <= max_chars
        assert marker == f"[truncated: {len(message)} chars]"
    else:
        assert record["message"] == message
    if "MAX_ITEMS" in limits:
        ids = record["extra_fields"]["ids"]
        assert ids[:10] == list(range(10)) and len(ids) == 11  # the first ten, and the marker of the rest
