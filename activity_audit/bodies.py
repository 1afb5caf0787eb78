"""What a request or response body looks like in a record: a bounded, safe summary, never the raw stream.

:func:`summarize_body` turns a body (bytes, or a reader it reads at most ``max_bytes + 1`` from) and its
``Content-Type`` into plain JSON values:

- empty body: ``None``;
- JSON and ``*/*+json``: the parsed value;
- malformed JSON: ``{"malformed_json": true, "text": "<safe text>"}``;
- ``application/x-www-form-urlencoded``: ``{"key": "value", "repeated": ["a", "b"]}``;
- ``text/*``, XML, JavaScript, CSV: the text;
- invalid UTF-8 in any textual type: ``{"invalid_utf8": true, "text": "<text with \\xNN escapes>"}``;
- a textual body holding NUL bytes and no declared charset that writes them (UTF-16, UTF-32): read as
  UTF-16 or UTF-32 when its byte order mark or first bytes say so (see :func:`sniff_utf16_32`), else
  ``{"type": "<content type>", "size": <bytes>}``: never as text with a NUL between letters, which the
  redactor could not read;
- ``multipart/form-data``: ``{"fields": {...}, "files": [{"field", "filename", "content_type", "size"}]}``,
  never the content of a file;
- anything else (images, PDFs, archives ...): ``{"type": "<content type>", "size": <bytes>}``;
- a body with a ``Content-Encoding`` other than ``identity`` (gzip, br ...), whatever its type:
  ``{"type": "<content type>", "size": <bytes as sent>, "content_encoding": "gzip"}`` (see
  :func:`encoded_body`); never decompressed, never kept as text;
- a textual body over ``max_bytes``: ``{"truncated": true, "size": <original bytes or null>,
  "text": "<its first max_bytes bytes, as safe text>"}``; the cut never splits a run of digits (it moves
  back to the run's start, see :func:`~activity_audit.encoding.clean_cut`) nor leaves half a character.

The header helpers return a plain ``dict`` with the names as they were sent (case preserved).

Every public function here is pure, bounded by ``max_bytes`` and never raises: a body it cannot summarise
becomes ``{"type": ..., "size": ..., "error": "<exception class>"}``.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any
from urllib.parse import parse_qsl

import orjson
from django.utils.http import parse_header_parameters

from .encoding import clean_cut

DEFAULT_MAX_BODY_BYTES = 64 * 1024

JSON = "json"
FORM = "form"
TEXT = "text"
MULTIPART = "multipart"
BINARY = "binary"

_TEXT_SUBTYPES = frozenset(
    {"xml", "javascript", "ecmascript", "x-javascript", "csv", "x-yaml", "yaml", "graphql", "x-ndjson"}
)
# A multipart part whose headers take more than this is not a part we can describe.
_MAX_PART_HEADER_BYTES = 8 * 1024
# Content-Encoding values that leave the bytes as they are (RFC 9110 section 8.4.1).
_IDENTITY = frozenset({"", "identity"})


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "UTF-8"})``."""
    if not content_type:
        return "", {}
    main, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, sep, value = item.partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


def body_kind(content_type: str | None) -> str:
    """One of ``json``, ``form``, ``text``, ``multipart``, ``binary`` for a ``Content-Type`` value."""
    kind = _kinds.get(content_type)
    if kind is None:
        kind = _remember(_kinds, content_type, _body_kind(content_type))
    return kind


def _body_kind(content_type: str | None) -> str:
    mime, _ = media_type(content_type)
    top, _, sub = mime.partition("/")
    if sub == "json" or sub.endswith("+json"):
        return JSON
    if mime == "application/x-www-form-urlencoded":
        return FORM
    if top == "multipart":
        return MULTIPART
    if top == "text" or sub in _TEXT_SUBTYPES or sub.endswith("+xml"):
        return TEXT
    return BINARY


def is_textual(content_type: str | None) -> bool:
    """True for the types whose content a record may keep: JSON, form, text, XML."""
    return body_kind(content_type) in (JSON, FORM, TEXT)


def summarize_body(
    content_type: str | None,
    body: bytes | bytearray | memoryview | IO[bytes] | None,
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
    size: int | None = None,
    content_encoding: str | None = None,
) -> Any:
    """The record's view of one body (see the module docstring for the shapes). Never raises.

    ``body`` is the whole body as bytes, or a binary reader: at most ``max_bytes + 1`` bytes are read from it,
    and a seekable reader is put back where it was. ``size`` is the full size when known (``Content-Length``);
    it is reported for truncated and binary bodies that were not read in full. ``content_encoding`` is the
    body's ``Content-Encoding`` header: unless it is ``identity``, the body is described by
    :func:`encoded_body` and none of it is read.
    """
    try:
        if content_encoding is not None and is_encoded(content_encoding):
            return encoded_body(content_type, _byte_size(body, size), content_encoding)
        return _summarize(content_type, body, max_bytes, size)
    except Exception as exc:
        return {"type": content_type or None, "size": size, "error": type(exc).__name__}


def _summarize(content_type: str | None, body: Any, max_bytes: int, size: int | None) -> Any:
    kind = body_kind(content_type)
    if body is None:
        return None if not size else {"type": content_type or None, "size": size}
    if kind == BINARY and size is not None and not isinstance(body, (bytes, bytearray, memoryview)):
        return {"type": content_type or None, "size": size}
    data, complete = _read_bounded(body, max_bytes, size)
    full_size = len(data) if complete and size is None else size
    if not data:
        return None
    if kind == BINARY:
        return {"type": content_type or None, "size": full_size}
    if kind == MULTIPART:
        summary = summarize_multipart(content_type, data, max_bytes)
        if not complete and isinstance(summary, dict):
            summary.update(truncated=True, size=full_size)
        return summary
    truncated = not complete or len(data) > max_bytes
    decoded = _text_of(data, body_charset(content_type, data), max_bytes if truncated else None)
    if decoded is None:
        return {"type": content_type or None, "size": full_size}
    text, clean = decoded
    if truncated:
        return {"truncated": True, "size": full_size, "text": text}
    if not clean:
        return {"invalid_utf8": True, "text": text}
    if kind == JSON:
        return parse_json(text)
    if kind == FORM:
        return parse_form(text)
    return text


def _text_of(data: bytes, decoding: tuple[str, bool] | None, cut_at: int | None) -> tuple[str, bool] | None:
    """``(text, decoded cleanly)`` of ``data`` (see :func:`safe_text`) as :func:`body_charset` said to decode
    it, cut at ``cut_at`` bytes (see :func:`~activity_audit.encoding.clean_cut`) when given. None when it is
    no text: no charset fits, or a sniffed one does not decode the bytes (the guess was wrong)."""
    if decoding is None:
        return None
    charset, sniffed = decoding
    if cut_at is not None:
        data = data[: clean_cut(data, cut_at)]
    text, clean = safe_text(data, charset, cut=cut_at is not None)
    return None if sniffed and not clean else (text, clean)


def is_encoded(content_encoding: str | None) -> bool:
    """True when a ``Content-Encoding`` value says the bytes are not the content itself (gzip, br, deflate,
    anything but ``identity``); None and an empty or blank value say they are."""
    if not content_encoding:
        return False
    return content_encoding.strip().lower() not in _IDENTITY


def encoded_body(content_type: str | None, size: int | None, content_encoding: str) -> dict[str, Any]:
    """``{"type": ..., "size": ..., "content_encoding": "gzip"}``: an encoded (compressed) body.

    Never its content, not even escaped: escaped bytes can be turned back into the compressed stream and
    decompressed, which would hand a reader of the record every secret the redactor could not see. ``size``
    is the size as sent (encoded).
    """
    return {"type": content_type or None, "size": size, "content_encoding": content_encoding.strip()}


def _byte_size(body: Any, size: int | None) -> int | None:
    """``size`` when given, else the length of a bytes-like ``body`` (a reader is not read: None)."""
    if size is not None or body is None:
        return size
    return len(body) if isinstance(body, (bytes, bytearray, memoryview)) else None


def _read_bounded(body: Any, max_bytes: int, size: int | None) -> tuple[bytes, bool]:
    """The bytes to look at, and whether they are the whole body.

    Bytes are the whole body unless ``size`` says they are only its beginning.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        return data, size is None or size <= len(data)
    position = body.tell() if _seekable(body) else None
    try:
        data = bytes(body.read(max_bytes + 1) or b"")
    finally:
        if position is not None:
            body.seek(position)
    return data, len(data) <= max_bytes


def _seekable(reader: Any) -> bool:
    try:
        return bool(reader.seekable())
    except Exception:
        return False


def body_charset(content_type: str | None, data: bytes) -> tuple[str, bool] | None:
    """How to decode a textual body: ``(charset, sniffed)``, or None when ``data`` is no text to decode.

    - a declared charset that does not write ASCII as ASCII (UTF-16, ``cp500`` ...): as :func:`text_charset`
      decides, not sniffed;
    - else, ``data`` without a NUL byte: the declared charset, UTF-8 when none is declared, not sniffed;
    - else (NUL bytes, which no text in an ASCII-compatible charset holds, but ASCII in UTF-16 or UTF-32
      does, as valid UTF-8 with a NUL beside every letter that the redactor could not read): the charset
      :func:`sniff_utf16_32` finds, sniffed (a caller treats bytes that do not decode in it as binary), or
      None when it finds none.

    Cheap for the common case: one search for a NUL byte (in C).
    """
    declared = media_type(content_type)[1].get("charset")
    if declared is not None and not _ascii_compatible(declared):
        return text_charset(declared, data), False
    if 0 not in data:  # an int, not b"\x00": a bytes needle costs four times as much on a small body
        return declared or "utf-8", False
    sniffed = sniff_utf16_32(data)
    return None if sniffed is None else (sniffed, True)


def sniff_utf16_32(data: bytes) -> str | None:
    """The UTF-16 or UTF-32 codec of ``data``, told as ``requests.utils.guess_json_utf`` tells it (RFC 4627):
    by a byte order mark, else by where the NUL bytes are among the first four (text starting with two ASCII
    characters in UTF-16-LE is ``{\\0"\\0``, one in UTF-32-BE ``\\0\\0\\0{``). None when neither tells.
    The codec is a guess: ``data`` may still not decode in it.
    """
    sample = data[:4]
    if sample in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):
        return "utf-32"  # before UTF-16: the UTF-32-LE mark starts with the UTF-16-LE one
    if sample[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    nuls = sample.count(0)
    if nuls == 2 and len(sample) == 4:
        if sample[::2] == b"\x00\x00":
            return "utf-16-be"
        if sample[1::2] == b"\x00\x00":
            return "utf-16-le"
    elif nuls == 3:
        if sample[:3] == b"\x00\x00\x00":
            return "utf-32-be"
        if sample[1:] == b"\x00\x00\x00":
            return "utf-32-le"
    return None


def text_charset(declared: str, data: bytes) -> str:
    """The charset to decode ``data`` with: ``declared``, unless that would hide ASCII text from the redactor.

    A charset that does not encode ASCII as ASCII (UTF-16/32, UTF-7, EBCDIC code pages such as ``cp500``)
    turns plain ASCII bytes into unrelated characters (``access_token=...`` labelled ``utf-16-le`` reads as
    CJK), which the redactor cannot match but which encode back to the original bytes. When the declared
    charset is such a one and ``data`` is printable UTF-8 (no NUL or other control bytes besides tab, CR
    and LF: genuine text in those charsets almost never is), ``"utf-8"`` is returned instead. An unknown
    charset is returned as it is (:func:`safe_text` falls back to UTF-8 for it).
    """
    if _ascii_compatible(declared) or _UNPRINTABLE.search(data) is not None:
        return declared
    return "utf-8" if _decodes(data, "utf-8") else declared


# Bytes no printable text in an ASCII-compatible charset holds: C0 controls but tab/LF/CR, and DEL.
_UNPRINTABLE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\t\r\n"


@functools.lru_cache(maxsize=64)
def _ascii_compatible(charset: str) -> bool:
    """True when ``charset`` encodes and decodes printable ASCII as the same bytes (unknown: True)."""
    try:
        return _PRINTABLE_ASCII.decode(charset) == _PRINTABLE_ASCII.decode("ascii")
    except LookupError:
        return True
    except (UnicodeDecodeError, ValueError):
        return False


def safe_text(data: bytes, charset: str = "utf-8", cut: bool = False) -> tuple[str, bool]:
    """Decode ``data``; bytes that do not decode become ``\\xNN`` escapes. Returns (text, decoded cleanly).

    An unknown ``charset`` falls back to UTF-8. ``cut`` says that ``data`` is only the beginning of a body
    (cut at the cap): then an incomplete multi-byte character at its end is dropped, not escaped, and does not
    count as undecodable. In complete data, every byte is kept (escaped when it does not decode).
    """
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return data.decode(charset), True
    except UnicodeDecodeError:
        pass
    decoder = codecs.getincrementaldecoder(charset)(errors="backslashreplace")
    text = decoder.decode(data, final=False)
    tail = decoder.getstate()[0]
    if cut and tail and len(tail) < 4:
        return text, _decodes(data[: len(data) - len(tail)], charset)
    return text + decoder.decode(b"", final=True), False


def _decodes(data: bytes, charset: str) -> bool:
    try:
        data.decode(charset)
    except UnicodeDecodeError:
        return False
    return True


def parse_json(text: str) -> Any:
    """The parsed JSON value, or ``{"malformed_json": true, "text": text}``.

    Integers are kept exact whatever their size: orjson reads one beyond 64 bits as a rounded float, so text
    holding a run of 19 digits or more (see :func:`has_long_digit_run`) is read again by the standard
    library, which reads them exactly.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _parse_json_stdlib(text, {"malformed_json": True, "text": text})
    return _parse_json_stdlib(text, value) if has_long_digit_run(text) else value


def has_long_digit_run(text: str) -> bool:
    """True when ``text`` holds 19 ASCII digits in a row: the shortest integer beyond 64 bits
    (``-9223372036854775809``) has as many.

    Two passes in C over a UTF-8 copy (a table lookup per byte, then a substring search), about half the time
    orjson takes to parse the same text; a regular expression takes ten times that.
    """
    if len(text) < _LONG_RUN:
        return False
    # find(), not "in": the operator costs a third more on a small body
    return text.encode("utf-8", "surrogatepass").translate(_DIGITS_MARKED).find(_LONG_RUN_MARK) != -1


_LONG_RUN = 19
# Every ASCII digit to "0", every other byte to a space: a run of digits is a run of "0"s.
_DIGITS_MARKED = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN_MARK = b"0" * _LONG_RUN


def _parse_json_stdlib(text: str, otherwise: Any) -> Any:
    """``text`` parsed by the standard library (exact big integers; also ``NaN``, which orjson refuses), or
    ``otherwise`` when it cannot parse it either (malformed, or nested beyond the recursion limit)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return otherwise


def parse_form(text: str) -> dict[str, Any]:
    """``a=1&b=2&b=3`` -> ``{"a": "1", "b": ["2", "3"]}``: one value stays a string, repeats become a list."""
    return group_pairs(parse_qsl(text, keep_blank_values=True))


def group_pairs(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Pairs to a dict, keeping every value of a repeated key (as a list, in order)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in out:
            out[key] = value
        elif isinstance(out[key], list):
            out[key].append(value)
        else:
            out[key] = [out[key], value]
    return out


def multi_value_dict(pairs: Iterable[tuple[str, list[Any]]]) -> dict[str, Any]:
    """A Django ``QueryDict.lists()`` to a dict: a single value stays a value, several stay a list."""
    return {key: values[0] if len(values) == 1 else list(values) for key, values in pairs}


def summarize_multipart(
    content_type: str | None, data: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Any:
    """Field values (textual, up to ``max_bytes`` in all) and file names and sizes of a multipart body.

    File content is never kept nor copied: parts are located by offset. A body without a usable boundary
    gives ``{"type": ..., "size": ...}``.
    """
    boundary = media_type(content_type)[1].get("boundary")
    if not boundary:
        return {"type": content_type or None, "size": len(data)}
    delimiter = b"--" + boundary.encode("latin-1")
    fields: list[tuple[str, Any]] = []
    files: list[dict[str, Any]] = []
    budget = max_bytes
    position = data.find(delimiter)
    while position != -1:
        start = position + len(delimiter)
        if data[start : start + 2] == b"--":
            break
        position = data.find(delimiter, start)
        end = len(data) if position == -1 else position
        head_end = data.find(b"\r\n\r\n", start, min(end, start + _MAX_PART_HEADER_BYTES))
        if head_end == -1:
            continue
        content_start = head_end + 4
        content_end = end - 2 if data[end - 2 : end] == b"\r\n" and end - 2 >= content_start else end
        size = content_end - content_start
        headers = _part_headers(data[start:head_end])
        name, filename = _disposition(headers.get("content-disposition", ""))
        if filename is not None:
            files.append(
                {
                    "field": name,
                    "filename": filename,
                    "content_type": headers.get("content-type"),
                    "size": size,
                }
            )
        elif size <= budget:
            budget -= size
            # A part with no closing delimiter runs to the end of a body that was cut.
            fields.append((name, safe_text(data[content_start:content_end], cut=position == -1)[0]))
        else:
            fields.append((name, {"truncated": True, "size": size}))
    return {"fields": group_pairs(fields), "files": files}


def _part_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", errors="replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _disposition(value: str) -> tuple[str, str | None]:
    """The ``name`` and ``filename`` of a part's ``Content-Disposition``, read as Django's multipart parser
    reads them: ``filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`` (RFC 5987/2231) is a ``filename``, decoded.

    ``filename`` is None for a field. A ``filename*`` in a charset Python does not know (which Django
    refuses) still makes the part a file, with the name as sent: a file's content never reaches a record.
    """
    try:
        params = parse_header_parameters(value)[1]
    except (ValueError, LookupError):
        params = media_type(value)[1]
    return params.get("name", ""), params.get("filename", params.get("filename*"))


def uploaded_files(files: Iterable[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Django's ``request.FILES.lists()`` as the records' file list (names, types, sizes; no content)."""
    return [
        {
            "field": field,
            "filename": getattr(upload, "name", None),
            "content_type": getattr(upload, "content_type", None),
            "size": getattr(upload, "size", None),
        }
        for field, uploads in files
        for upload in uploads
    ]


# --- headers -------------------------------------------------------------------------------------------


def capture_headers(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """Headers as a plain ``{name: value}`` dict, names as sent. Never raises.

    Accepts a mapping (Django's ``request.headers`` / ``response.headers``, a ``requests`` header dict) or
    ``(name, value)`` pairs; a name given twice keeps both values joined with ``", "``.
    """
    if not headers:
        return {}
    try:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        out: dict[str, str] = {}
        for name, value in pairs:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            out[key] = f"{out[key]}, {text}" if key in out else text
        return out
    except Exception as exc:
        return {"[unreadable headers]": type(exc).__name__}


def headers_from_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """Request headers from a WSGI/ASGI ``META`` dict (``HTTP_X_API_KEY`` -> ``X-Api-Key``)."""
    names = _header_names
    out: dict[str, str] = {}
    for key, value in meta.items():
        name = names.get(key)
        if name is None:
            name = _remember(names, key, _header_name(key))
        if name and (value or key.startswith("HTTP_")):
            out[name] = value if type(value) is str else str(value)
    return out


def _header_name(meta_key: str) -> str:
    """``HTTP_X_API_KEY`` -> ``X-Api-Key``, ``CONTENT_TYPE`` -> ``Content-Type``; "" for what is no header."""
    if meta_key.startswith("HTTP_"):
        return meta_key[5:].replace("_", "-").title()
    if meta_key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return meta_key.replace("_", "-").title()
    return ""


# Content types and META keys seen, with what they mean: the same few values come with every request.
# Clients choose them, so each cache is emptied when it reaches _CACHE_LIMIT entries.
_CACHE_LIMIT = 512
_kinds: dict[str | None, str] = {}
_header_names: dict[str, str] = {}


def _remember(cache: dict[Any, str], key: Any, value: str) -> str:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value
