"""What the request middleware reads from a Django request and response, as plain values.

The capture functions here read what is already in memory, never consume a stream the view or the client
still needs, and leave parsing and redaction of anything large to later stages.

Request bodies: the one rule
    The middleware reads a request body itself only **before** the view, and only when all of these hold: the
    method and path keep bodies (``BODY_METHODS``, ``BODY_PATHS``), the type is textual (JSON, ``+json``,
    form, text, XML), ``Content-Length`` is known and at most ``MAX_BODY_BYTES`` (and at most Django's
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``, so the view never meets ``RequestDataTooBig`` it would not have met), and
    nothing has started reading the stream. It reads through ``request.body``, which keeps the bytes and hands
    the view the same bytes through ``request.body``, ``request.POST``, ``request.read()`` and
    ``request.stream`` (how Django itself caches a body). This is what lets a record show a JSON body that a
    framework such as Django REST framework reads from the stream. When that read fails (the client went away
    while sending), the view meets the same error on its first read as it would without the middleware, and
    the record says ``{"type": ..., "size": ..., "error": "<exception class>"}``.

    Everything else (multipart uploads, binary bodies, bodies over the cap, bodies of unknown length) is never
    read by the middleware: upload handlers still stream files to disk and a view reading ``request.stream``
    gets every byte. After the view the record uses what the view itself read (``request.body``, or
    ``request.POST``/``request.FILES`` for multipart: field values plus file names and sizes), and otherwise
    says ``{"type": ..., "size": ..., "unread": true}``.

Response bodies
    Streaming responses (``StreamingHttpResponse``, ``FileResponse``) are never iterated: the record has
    ``{"type": ..., "size": <Content-Length or null>, "streaming": true}``. Other responses are summarised
    from the content already in memory, of which at most ``MAX_BODY_BYTES`` is copied.

Values built later
    Parsing a body (JSON, form, multipart) is the costly part of a request record, and its input is already
    an immutable ``bytes`` object. So a body of at most ``MAX_FIELD_CHARS`` bytes (whose summary cannot hit a
    cap) goes into the record as a :class:`~activity_audit.deferred.Pending` summary: a reference to the
    bytes, the content type and the function to call. Headers and query parameters are built later too,
    from a private shallow copy of ``META`` and of the response's header store, and the query string as
    sent. :func:`~activity_audit.deferred.realise_pending` builds them on the worker thread, before any
    ``redact`` implementation looks at the record (``activity_audit.plugins.deferred_values``, ``tryfirst``,
    and the built-in redactor itself). When an ``audit_request`` implementation is registered, the
    middleware builds them on the request thread instead, so that hook always sees the record in its final
    shape.

The functions named ``deferred_*`` return such values; everything else here runs on the request thread.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import IO, Any
from urllib.parse import parse_qsl

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIRequest
from django.http import UnreadablePostError

from .bodies import (
    MULTIPART,
    body_kind,
    capture_headers,
    encoded_body,
    group_pairs,
    headers_from_meta,
    is_encoded,
    is_textual,
    summarize_body,
    uploaded_files,
)
from .conf import AuditSettings, get_settings
from .deferred import Pending, RouteWithSecrets
from .encoding import MORE_ITEMS_KEY, Limits, Snapshotter
from .paths import expressions_test, path_test
from .redaction import Redactor

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")


@dataclass(frozen=True)
class RequestRules:
    """The request settings, compiled once per settings object."""

    settings: AuditSettings
    limits: Limits
    is_skipped: Callable[[str], bool]
    keeps_body_for_path: Callable[[str], bool]
    body_methods: frozenset[str]
    max_body_bytes: int
    trusted_proxies: int
    request_id_header: str
    request_id_meta_key: str
    # ``Redactor.scrub_text`` with the configured keys and patterns: not None when a text holds a secret.
    find_secrets: Callable[[str], str | None]
    # ``Redactor.is_sensitive_key`` with the configured keys: True for a name whose value is masked.
    is_secret_name: Callable[[str], bool]

    def keeps_body(self, method: str | None, path: str) -> bool:
        return method in self.body_methods and self.keeps_body_for_path(path)


_rules: RequestRules | None = None


def current_rules() -> RequestRules:
    """The compiled rules for the settings in force (recompiled when the settings object changes).

    Built at start-up and whenever ``ACTIVITY_AUDIT`` changes (:mod:`activity_audit.apps`), so a rule that
    cannot be built stops start-up (:class:`~django.core.exceptions.ImproperlyConfigured` naming the setting)
    rather than losing the record of every request.
    """
    global _rules
    settings = get_settings()
    rules = _rules
    if rules is None or rules.settings is not settings:
        rules = _rules = _compile(settings)
    return rules


def _compile(settings: AuditSettings) -> RequestRules:
    header = settings.REQUEST_ID_HEADER
    redactor = Redactor(settings.REDACT_KEYS, settings.REDACT_PATTERNS)
    return RequestRules(
        settings=settings,
        limits=settings.limits,
        is_skipped=_path_rule("SKIP_PATHS", lambda: path_test(settings.SKIP_PATHS)),
        keeps_body_for_path=_path_rule("BODY_PATHS", lambda: path_matcher(settings.BODY_PATHS, default=True)),
        body_methods=frozenset(settings.BODY_METHODS),
        max_body_bytes=settings.MAX_BODY_BYTES,
        trusted_proxies=settings.TRUSTED_PROXIES,
        request_id_header=header,
        request_id_meta_key="HTTP_" + header.upper().replace("-", "_"),
        find_secrets=redactor.scrub_text,
        is_secret_name=redactor.is_sensitive_key,
    )


def _path_rule(key: str, build: Callable[[], Callable[[str], bool]]) -> Callable[[str], bool]:
    """The path test ``build`` makes of ``ACTIVITY_AUDIT[key]``; a regular expression it cannot compile is an
    :class:`~django.core.exceptions.ImproperlyConfigured` naming the setting."""
    try:
        return build()
    except re.error as exc:
        raise ImproperlyConfigured(f"ACTIVITY_AUDIT['{key}'] cannot be compiled ({exc}).") from exc


def path_matcher(patterns: tuple[str, ...], default: bool) -> Callable[[str], bool]:
    """A test for paths: prefixes use ``str.startswith``, ``^`` patterns are regular expressions matched at
    the start of the path, each as it matches alone (:func:`~activity_audit.paths.expressions_test`).

    With no patterns at all the test always returns ``default``. Raises :class:`re.error` for a pattern that
    does not compile.
    """
    if not patterns:
        return lambda path: default
    prefixes = tuple(pattern for pattern in patterns if not pattern.startswith("^"))
    expressions = [pattern for pattern in patterns if pattern.startswith("^")]
    if not expressions:
        return lambda path: path.startswith(prefixes)
    matches = expressions_test(expressions)
    return lambda path: path.startswith(prefixes) or matches(path)


# --- identity of the request -----------------------------------------------------------------------------


def request_id(meta: dict[str, Any], rules: RequestRules) -> str:
    """The caller's request id when it is a sane token, otherwise a new UUID4.

    Sane: 1 to 128 characters of ``A-Z a-z 0-9 . _ : + / = -``, starting with a letter or digit (a leading
    ``-`` could be read as an option by tools handed the id), and nothing the redactor would mask (a JSON Web
    Token, a card number, ``password=...``): the id is copied into every record of the request and never
    redacted, so a secret sent as an id must not become one.
    """
    incoming = meta.get(rules.request_id_meta_key)
    if incoming and _VALID_REQUEST_ID.fullmatch(incoming) and rules.find_secrets(incoming) is None:
        return str(incoming)
    return new_uuid4()


# The UUID variant nibble (10xx) for each hex digit, keeping its two random low bits.
_VARIANT_NIBBLE = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_uuid4() -> str:
    """A random UUID4 in its canonical text form: what ``str(uuid.uuid4())`` gives, at a fraction of the cost.

    122 random bits from ``os.urandom`` (read in blocks, see :class:`_RandomBlocks`), formatted without
    building a ``UUID`` object.
    """
    digits = _random.take(16).hex()
    return (
        f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-"
        f"{_VARIANT_NIBBLE[digits[16]]}{digits[17:20]}-{digits[20:]}"
    )


class _RandomBlocks:
    """``os.urandom`` read 4 KiB at a time: one system call per 256 request ids, not one per request.

    Thread-safe. A forked child starts with an empty block, so parent and children never hand out the same
    bytes.
    """

    _BLOCK_SIZE = 4096

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._position = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            start = self._position
            if start + count > len(self._block):
                self._block, start = os.urandom(self._BLOCK_SIZE), 0
            self._position = start + count
            return self._block[start : start + count]


_random = _RandomBlocks()
os.register_at_fork(after_in_child=_random.reset)


def client_address(meta: dict[str, Any], trusted_proxies: int) -> str | None:
    """The client's IP address.

    ``REMOTE_ADDR`` unless ``trusted_proxies`` (N) proxies stand in front of the application: then each
    of them appended the address it was connected from to ``X-Forwarded-For``, so the client is the N-th
    address counted from the right of ``X-Forwarded-For`` + ``REMOTE_ADDR``, that is the N-th entry from the
    right of ``X-Forwarded-For`` (its leftmost when it has fewer). ``REMOTE_ADDR`` is the nearest proxy also
    when the server leaves it empty or unset (a unix socket): it still counts as one hop. Entries further left
    were written by the client and are ignored. An entry that is not an IP address gives ``REMOTE_ADDR``.
    """
    remote = meta.get("REMOTE_ADDR") or None
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if not trusted_proxies or not forwarded:
        return remote
    hops = [hop for hop in (entry.strip() for entry in forwarded.split(",")) if hop]
    if not hops:
        return remote
    candidate = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def route_of(request: Any) -> str | None:
    """The URL pattern that matched (``"api/authors/<int:pk>/"``), for grouping; None when nothing matched.

    When the pattern captured part of the path in a URL kwarg whose name the redactor treats as a secret
    (``reset/<uidb64>/<token>/``), the route is a :class:`~activity_audit.deferred.RouteWithSecrets` that
    carries the captured text, so that it is masked in the record before anything reads it.
    """
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if route is None:
        return None
    captured = getattr(match, "captured_kwargs", None)  # without the URLconf's extra kwargs
    if captured:
        secrets = path_secrets(captured, current_rules().is_secret_name)
        if secrets:
            return RouteWithSecrets(route, secrets)
    return str(route)


def path_secrets(captured: dict[str, Any], is_secret_name: Callable[[str], bool]) -> tuple[str, ...]:
    """The text of the captured URL kwargs whose names are secret names; empty values are left out.

    A converter's value (an ``int``, a ``UUID``) counts as its ``str()``, which is how the path spells it.
    """
    secrets: tuple[str, ...] = ()
    for name, value in captured.items():  # a plain loop: this runs for every request with URL kwargs
        if is_secret_name(name):
            text = value if type(value) is str else str(value)
            if text:
                secrets += (text,)
    return secrets


# --- bodies ----------------------------------------------------------------------------------------------


def content_length(meta: dict[str, Any]) -> int | None:
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        return None
    return length if length > 0 else None


def preload_request_body(request: Any, rules: RequestRules) -> str | None:
    """Before the view: cache a small textual body through ``request.body`` (see the module docstring).

    When reading fails (the client went away while sending), the request is left so that the view meets the
    same error on its first read, as it would have without the middleware, and the error's class name is
    returned for the record; otherwise None.
    """
    meta = request.META
    length = content_length(meta)
    if length is None:  # no body (or one of unknown length, which is never read here)
        return None
    if not rules.keeps_body(request.method, request.path) or not is_textual(meta.get("CONTENT_TYPE")):
        return None
    upload_limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if length > rules.max_body_bytes or (upload_limit is not None and length > upload_limit):
        return None
    if "_body" in request.__dict__ or getattr(request, "_read_started", True):
        return None
    try:
        request.body  # noqa: B018 - reading caches the bytes; the view gets the same bytes
    except Exception as exc:
        if request._read_started:  # else nothing was consumed: the view meets the error by itself
            request._stream = _FailedStream(_stream_error(exc))
            request._read_started = False
        return type(exc).__name__
    return None


class _FailedStream:
    """A request stream whose every read raises the error that reading the real stream raised.

    Django wraps the ``OSError`` of a read in ``UnreadablePostError`` and refuses ``request.body`` once a read
    has started, so without this the view would meet an empty ``request.POST`` or ``RawPostDataException``.
    """

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        raise self.error

    readline = read

    def seekable(self) -> bool:  # asked by Django 6 before it reads a body
        return False

    def close(self) -> None:
        pass


def _stream_error(exc: BaseException) -> BaseException:
    """What the stream itself raised, under the ``UnreadablePostError`` layers Django added."""
    while isinstance(exc, UnreadablePostError) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__
    return exc


def request_body(
    request: Any, rules: RequestRules, copier: Snapshotter, read_error: str | None = None
) -> Any:
    """After the view: the request body's summary from what is already in memory. Never reads a stream.

    The summary is passed through ``copier`` (the record's caps) unless it is too small to exceed them.
    A body sent with a ``Content-Encoding`` (gzip ...) is only described, read or not (see
    :func:`~activity_audit.bodies.encoded_body`). ``read_error`` is what :func:`preload_request_body`
    returned: the body could not be read, and the record says ``{"type": ..., "size": ..., "error":
    "<exception class>"}``. A body of undeclared length (chunked) that nothing read is unread, size null
    (:func:`_undeclared_body`).
    """
    meta = request.META
    content_type = meta.get("CONTENT_TYPE") or None
    length = content_length(meta)
    body = request.__dict__.get("_body")
    if body or length:
        encoding = meta.get("HTTP_CONTENT_ENCODING")
        if encoding and is_encoded(encoding):
            size = len(body) if body else length
            return copier.copy(encoded_body(content_type, size, str(encoding)))
    else:  # no length declared, no byte read: no body, or one of unknown length nothing read
        return _undeclared_body(request, content_type, copier)
    if type(body) is bytes and len(body) <= copier.limits.max_chars:
        return Pending(summarize_body, content_type, body, rules.max_body_bytes)
    if body is not None:
        return within_caps(summarize_body(content_type, body, rules.max_body_bytes), len(body), copier)
    if body_kind(content_type) == MULTIPART and "_files" in request.__dict__:
        return copier.copy(parsed_multipart(request, rules.max_body_bytes))
    if read_error is not None:
        return {"type": content_type, "size": length, "error": read_error}
    return {"type": content_type, "size": length, "unread": True}


def _undeclared_body(request: Any, content_type: str | None, copier: Snapshotter) -> Any:
    """After the view, for a request that declared no length and whose body nothing read: None when it has
    no body, else ``{"type": ..., "size": null, "unread": true}`` (or, sent with a ``Content-Encoding``,
    :func:`~activity_audit.bodies.encoded_body` with size null). Never reads a stream."""
    if not _has_undeclared_body(request):
        return None
    encoding = request.META.get("HTTP_CONTENT_ENCODING")
    if encoding and is_encoded(encoding):
        return copier.copy(encoded_body(content_type, None, str(encoding)))
    return {"type": content_type, "size": None, "unread": True}


def _has_undeclared_body(request: Any) -> bool:
    """True when a request without a ``Content-Length`` carries a body all the same (chunked, or an HTTP/2
    stream). Reads nothing.

    Under ASGI, Django has received the whole body into a temporary file before the view: its size decides.
    Otherwise a ``Transfer-Encoding`` header says a body follows (RFC 9112, section 6.1). Django's WSGI
    request reads nothing of a body without ``Content-Length`` (gunicorn, ``runserver``: the view gets
    ``b""``), so such a body stays unread whatever the view does.
    """
    stream = request.__dict__.get("_stream")
    if type(stream) is SpooledTemporaryFile:  # what Django's ASGI handler receives the body into
        size = _stored_size(stream)
        if size is not None:
            return size > 0
    return bool(request.META.get("HTTP_TRANSFER_ENCODING"))


def _stored_size(stream: IO[bytes]) -> int | None:
    """The size of a seekable file, its position left as it was; None when it cannot be told (closed)."""
    try:
        position = stream.tell()
        size = stream.seek(0, os.SEEK_END)
        stream.seek(position)
    except (OSError, ValueError):
        return None
    return size


def parsed_multipart(request: Any, max_bytes: int) -> dict[str, Any]:
    """Fields (values up to ``max_bytes`` in all) and files (name, type, size) Django already parsed."""
    budget = max_bytes
    fields: list[tuple[str, Any]] = []
    for name, values in request.__dict__["_post"].lists():
        for value in values:
            size = len(value)
            if size <= budget:
                budget -= size
                fields.append((name, value))
            else:
                fields.append((name, {"truncated": True, "size": size}))
    return {"fields": group_pairs(fields), "files": uploaded_files(request.__dict__["_files"].lists())}


def response_body(response: Any, max_bytes: int, copier: Snapshotter) -> Any:
    """The summary of a response body; streaming responses are described, never iterated, and an encoded
    (compressed) body is described, never read (see :func:`~activity_audit.bodies.encoded_body`)."""
    content_type = response.get("Content-Type")
    if getattr(response, "streaming", False):
        return {"type": content_type, "size": _declared_length(response), "streaming": True}
    prefix, size = _content_prefix(response, max_bytes)
    encoding = _content_encoding(response)
    if encoding is not None and is_encoded(encoding):
        return copier.copy(encoded_body(content_type, size, encoding))
    if type(prefix) is bytes and len(prefix) <= copier.limits.max_chars:
        return Pending(summarize_body, content_type, prefix, max_bytes, size)
    return within_caps(summarize_body(content_type, prefix, max_bytes, size=size), len(prefix), copier)


# --- values built on the worker ------------------------------------------------------------------------


# Entries of ``META`` that hold the server's live objects (streams, sockets), never headers: left out of the
# copy kept for the worker, so that a queued record does not keep them alive.
_SERVER_OBJECTS = ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper", "gunicorn.socket")


def deferred_request_headers(meta: dict[str, Any], copier: Snapshotter) -> Pending:
    """The request headers, built later from a copy of ``META`` (one C-level copy on the request thread).

    The copy leaves out the server's stream and socket objects (:data:`_SERVER_OBJECTS`).
    """
    kept = dict(meta)
    for key in _SERVER_OBJECTS:
        kept.pop(key, None)
    return Pending(_held_request_headers, kept, copier, copier=copier)


def _held_request_headers(meta: dict[str, Any], copier: Snapshotter) -> Any:
    return held(headers_from_meta(meta), copier)


def deferred_query_params(request: Any, copier: Snapshotter) -> Any:
    """``?a=1&b=2&b=3`` -> ``{"a": "1", "b": ["2", "3"]}``, parsed later from the query string as sent
    (see :func:`parse_query`)."""
    query = request.META.get("QUERY_STRING")
    if not query:
        return {}
    from_wsgi = isinstance(request, WSGIRequest)
    if type(query) is not str:  # not what Django's handlers put there
        from_wsgi = isinstance(query, (bytes, bytearray))
        query = query.decode("iso-8859-1") if from_wsgi else str(query)
    return Pending(_held_query_params, query, from_wsgi, copier, copier=copier)


def _held_query_params(query: str, from_wsgi: bool, copier: Snapshotter) -> Any:
    params, more = parse_query(query, from_wsgi, copier.limits.max_items)
    if not more:
        return held(params, copier)
    params = held(params, copier)
    params[MORE_ITEMS_KEY] = f"{more} more parameters"
    copier.truncated = True
    return params


def parse_query(query: str, from_wsgi: bool, max_items: int) -> tuple[dict[str, Any], int]:
    """The query string's parameters as Django parses URLs, whatever the request's body charset: UTF-8 with
    undecodable bytes replaced, a repeated key keeping every value; and how many parameters were left out.
    Never raises.

    ``from_wsgi``: ``query`` is WSGI's text, the raw bytes as latin-1. Only the first ``max_items``
    ``&``-separated pieces are parsed, whatever Django's ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (a record must not
    be lost to a long query, nor cost the worker more than the caps let it keep).
    """
    if from_wsgi:
        raw = query.encode("iso-8859-1", "replace")
        try:
            query = raw.decode("utf-8")
        except UnicodeDecodeError:  # not UTF-8: each byte a character, as Django's QueryDict falls back to
            query = raw.decode("iso-8859-1")
    pieces = query.split("&", max_items)
    more = 0
    if len(pieces) > max_items:
        rest = pieces.pop().split("&")
        more = len(rest) - rest.count("")  # empty pieces are no parameters (as parse_qsl has it)
    return group_pairs(parse_qsl("&".join(pieces), keep_blank_values=True, encoding="utf-8")), more


def deferred_response_headers(response: Any, copier: Snapshotter) -> Any:
    """The response headers as sent (see :func:`response_headers`), built later from a copy of Django's
    header store; headers kept in any other way, and cookies, are read at once."""
    store = getattr(response.headers, "_store", None)
    if type(store) is not dict:
        return held(response_headers(response), copier)
    cookies = getattr(response, "cookies", None)
    set_cookie = _set_cookie_header(cookies) if cookies else None
    return Pending(_held_response_headers, dict(store), set_cookie, copier, copier=copier)


def _held_response_headers(store: dict[str, Any], set_cookie: str | None, copier: Snapshotter) -> Any:
    headers = _headers_from_store(store)
    if set_cookie is not None:
        headers["Set-Cookie"] = set_cookie
    return held(headers, copier)


def held(value: Any, copier: Snapshotter) -> Any:
    """A fresh string, or a flat dict of strings / lists of strings, held to ``MAX_FIELD_CHARS`` (keys too)
    and ``MAX_ITEMS``; copied through ``copier`` only when something in it is over a cap."""
    limits = copier.limits
    if type(value) is str:
        return value if len(value) <= limits.max_chars else copier.copy(value)
    if len(value) > limits.max_items or max(map(len, value), default=0) > limits.max_chars:
        return copier.copy(value)
    for item in value.values():
        if len(item) > limits.max_chars or (type(item) is list and len(item) > limits.max_items):
            return copier.copy(value)
        if type(item) is list and any(len(text) > limits.max_chars for text in item):
            return copier.copy(value)
    return value


def within_caps(summary: Any, source_bytes: int, copier: Snapshotter) -> Any:
    """``summary`` held to the record's caps.

    A summary is a fresh value nobody else holds, so it needs no copy for safety; it only has to respect
    ``MAX_FIELD_CHARS``/``MAX_ITEMS``/``MAX_DEPTH``. Parsed from at most ``max_chars`` bytes, no string in it
    can be longer than ``max_chars`` and it holds at most ``max_chars / 2`` items and levels, which the
    record's readers (the redactor included) handle; anything larger goes through ``copier``.
    """
    if source_bytes <= copier.limits.max_chars:
        return summary
    return copier.copy(summary)


def _content_prefix(response: Any, max_bytes: int) -> tuple[bytes, int]:
    """At most ``max_bytes + 1`` bytes of the content, and the full size, without joining a large body."""
    chunks = getattr(response, "_container", None)
    if type(chunks) is list and len(chunks) == 1 and type(chunks[0]) is bytes:  # what HttpResponse holds
        return chunks[0], len(chunks[0])
    if not isinstance(chunks, list) or not all(isinstance(chunk, bytes) for chunk in chunks):
        content = bytes(response.content)
        return content, len(content)
    size = sum(len(chunk) for chunk in chunks)
    if len(chunks) == 1:
        return chunks[0], size
    parts, kept = [], 0
    for chunk in chunks:
        if kept > max_bytes:
            break
        parts.append(chunk[: max_bytes + 1 - kept])
        kept += len(parts[-1])
    return b"".join(parts), size


def _content_encoding(response: Any) -> str | None:
    """The response's ``Content-Encoding``, looked up in Django's header store when that is what it holds
    (a miss there costs no exception)."""
    try:
        pair = response.headers._store.get("content-encoding")
    except AttributeError:
        value = response.get("Content-Encoding")
        return None if value is None else str(value)
    return str(pair[1]) if pair else None


def _declared_length(response: Any) -> int | None:
    try:
        return int(response["Content-Length"])
    except (KeyError, TypeError, ValueError):
        return None


def response_headers(response: Any) -> dict[str, str]:
    """Response headers as sent, ``Set-Cookie`` included (Django keeps cookies apart from the headers)."""
    headers = _plain_headers(response.headers)
    cookies = getattr(response, "cookies", None)
    if cookies:
        headers["Set-Cookie"] = _set_cookie_header(cookies)
    return headers


def _set_cookie_header(cookies: Any) -> str:
    return ", ".join(morsel.OutputString() for morsel in cookies.values())


def error_text(exc: BaseException) -> str:
    """``"ValueError: boom"``; an exception whose ``str()`` fails still gives its class."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _plain_headers(headers: Any) -> dict[str, str]:
    """Django's ``ResponseHeaders`` as a dict, copied from its store of ``(name, value)`` pairs when that is
    what it holds (no lookup per header); anything else goes through :func:`capture_headers`."""
    store = getattr(headers, "_store", None)
    if type(store) is dict:
        return _headers_from_store(store, headers)
    return capture_headers(headers)


def _headers_from_store(store: dict[str, Any], fallback: Any = None) -> dict[str, str]:
    """``{name: value}`` from the ``{lower name: (name, value)}`` store of Django's ``ResponseHeaders``."""
    try:
        plain = dict(store.values())
        if len(plain) == len(store) and all(type(value) is str for value in plain.values()):
            return plain
    except (TypeError, ValueError):
        pass
    return capture_headers(fallback if fallback is not None else list(store.values()))
