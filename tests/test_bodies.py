"""activity_audit.bodies: every body shape, the byte cap, readers, and inputs that must not raise."""

from __future__ import annotations

import io

import pytest

from activity_audit.bodies import (
    body_kind,
    capture_headers,
    headers_from_meta,
    parse_form,
    safe_text,
    summarize_body,
    summarize_multipart,
)

BOUNDARY = "XyZ"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
        ("application/vnd.api+json; charset=utf-8", b'["x"]', ["x"]),
        ("application/json", b'{"a": 1,', {"malformed_json": True, "text": '{"a": 1,'}),
        ("application/json", b"", None),
        ("application/json", b"\xff{}", {"invalid_utf8": True, "text": "\\xff{}"}),
        ("application/x-www-form-urlencoded", b"a=1&b=2&b=3&c=", {"a": "1", "b": ["2", "3"], "c": ""}),
        ("text/plain; charset=utf-8", "héllo".encode(), "héllo"),
        ("text/plain; charset=latin-1", "café".encode("latin-1"), "café"),
        ("text/plain; charset=no-such-charset", b"plain", "plain"),
        ("application/xml", b"<a>1</a>", "<a>1</a>"),
        ("text/csv", b"a,b\n1,2\n", "a,b\n1,2\n"),
        ("image/png", b"\x89PNG" + bytes(100), {"type": "image/png", "size": 104}),
        ("application/octet-stream", b"\x00" * 7, {"type": "application/octet-stream", "size": 7}),
        (None, b"who knows", {"type": None, "size": 9}),
    ],
)
def test_shapes(content_type, body, expected):
    assert summarize_body(content_type, body) == expected


def test_over_the_cap_keeps_the_start_and_the_original_size():
    body = b'{"k": "' + b"v " * 500 + b'"}'
    assert summarize_body("application/json", body, max_bytes=10) == {
        "truncated": True,
        "size": len(body),
        "text": '{"k": "v v',
    }


def test_a_character_cut_by_the_cap_is_dropped_not_escaped():
    # A cut stays inside a character only in a word longer than WORD_LOOKBACK (512), where it falls at
    # 598 - 512 = 86 bytes: after 28 "€" (3 bytes each) and 2 bytes of the 29th.
    assert summarize_body("text/plain", "€".encode() * 200, max_bytes=598) == {
        "truncated": True,
        "size": 600,
        "text": "€" * 28,
    }


def test_a_reader_is_read_only_up_to_the_cap_and_put_back():
    reader = io.BytesIO(b"x " * 5_000)
    reader.seek(10)
    summary = summarize_body("text/plain", reader, max_bytes=100, size=9990)
    assert summary == {"truncated": True, "size": 9990, "text": "x " * 50}
    assert reader.tell() == 10


def test_a_binary_reader_of_known_size_is_not_read_at_all():
    class Unreadable(io.RawIOBase):
        def read(self, size=-1):
            raise AssertionError("read")

    assert summarize_body("application/zip", Unreadable(), size=123) == {
        "type": "application/zip",
        "size": 123,
    }


def test_a_failing_reader_gives_a_marker_not_an_exception():
    class Broken(io.RawIOBase):
        def read(self, size=-1):
            raise OSError("disk gone")

    assert summarize_body("text/plain", Broken(), size=5) == {
        "type": "text/plain",
        "size": 5,
        "error": "OSError",
    }


def test_multipart_fields_and_files_never_the_file_content():
    body = multipart(
        ("title", None, b"Report"), ("tag", None, b"a"), ("tag", None, b"b"), ("doc", "r.pdf", b"%PDF" * 500)
    )
    assert summarize_body(MULTIPART, body) == {
        "fields": {"title": "Report", "tag": ["a", "b"]},
        "files": [
            {"field": "doc", "filename": "r.pdf", "content_type": "application/octet-stream", "size": 2000}
        ],
    }


def test_multipart_field_values_share_the_byte_budget():
    body = multipart(("small", None, b"ok"), ("large", None, b"z" * 500))
    assert summarize_multipart(MULTIPART, body, max_bytes=100) == {
        "fields": {"small": "ok", "large": {"truncated": True, "size": 500}},
        "files": [],
    }


def test_multipart_without_boundary_or_garbage_does_not_raise():
    assert summarize_body("multipart/form-data", b"--x\r\n") == {"type": "multipart/form-data", "size": 5}
    assert summarize_body(MULTIPART, b"\xff\xfe garbage --XyZ no headers") == {"fields": {}, "files": []}


def test_deeply_nested_json_is_kept_as_text():
    body = b"[" * 5000 + b"]" * 5000
    summary = summarize_body("application/json", body, max_bytes=20_000)
    assert summary == {"malformed_json": True, "text": body.decode()}


def test_body_kinds():
    assert [
        body_kind(t)
        for t in ("application/problem+json", "application/atom+xml", "multipart/mixed", "video/mp4")
    ] == [
        "json",
        "text",
        "multipart",
        "binary",
    ]


def test_safe_text_reports_whether_it_decoded_cleanly():
    assert safe_text(b"ok") == ("ok", True)
    assert safe_text(b"\xc3", cut=True) == ("", True)  # a character cut at the end of a cut body: dropped
    assert safe_text(b"\xc3") == ("\\xc3", False)  # the end of a complete body: kept, escaped
    assert safe_text(b"a\xffb") == ("a\\xffb", False)


def test_parse_form_keeps_repeats_and_blank_values():
    assert parse_form("x=1&x=2&x=3&y=&z=%20") == {"x": ["1", "2", "3"], "y": "", "z": " "}


def test_headers_keep_case_and_join_repeats():
    assert capture_headers([("X-Trace", "a"), ("x-trace", "b"), ("X-Trace", "c")]) == {
        "X-Trace": "a, c",
        "x-trace": "b",
    }
    assert capture_headers({"Content-Type": "text/plain", b"X-Raw": b"\xe9"}) == {
        "Content-Type": "text/plain",
        "X-Raw": "é",
    }
    assert capture_headers(None) == {}


def test_headers_from_meta():
    meta = {
        "HTTP_X_API_KEY": "k",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "",
        "REMOTE_ADDR": "1.2.3.4",
    }
    assert headers_from_meta(meta) == {"X-Api-Key": "k", "Content-Type": "text/plain"}
