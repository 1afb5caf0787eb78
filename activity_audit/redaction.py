"""Finding secrets in a record and masking them: sensitive keys at any depth, and secret-shaped text.

:class:`Redactor` walks a record (plain JSON values) in place. It keeps every key and replaces values:

- the value of a **sensitive key**, at any depth, whatever its type (``None``, booleans and empty strings are
  left alone: they hide nothing). Keys are compared case-insensitively with ``-``, ``_``, spaces and a
  trailing number ignored, so ``X-Api-Key``, ``api_key``, ``apiKey`` and ``API-KEY`` are one key, and
  ``password2`` is ``password``. A key is sensitive when it is in :data:`SENSITIVE_KEYS` (or
  ``REDACT_KEYS``) or ends with one of :data:`SENSITIVE_SUFFIXES` (``new_password``, ``github_token``).
  Percent escapes are decoded first (``pass%77ord``), and a nested-form key (``user[password]``,
  ``items[0][api_key]``) is sensitive when one of its bracketed parts is, or the whole without brackets.
- inside any string: JSON Web Tokens, PEM private keys, ``Bearer``/``Basic`` credentials, the password of
  ``scheme://user:password@host``, payment card numbers, whatever ``REDACT_PATTERNS`` match, and the value
  next to a sensitive key in ``key=value`` pairs (query strings and fragments, form text, signed URLs),
  ``"key": value`` pairs (JSON text, e.g. a truncated body; a list or object value is masked whole),
  database errors (``Key (api_token)=(...)``) and XML (``<password>...</password>``, ``password="..."``).
- secret-shaped text in a dict **key** (``{"<JWT>": ""}`` from a bare query string): the key is replaced by
  its masked text; keys that become equal are kept apart with a suffix (``[REDACTED] (2)``).
- integers that are payment card numbers (values and keys).

Card numbers are 13 to 19 digits, optionally grouped with spaces or dashes, that pass the Luhn check **and**
start with an issuer prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro's fixed
prefixes). Ordinary ids rarely pass both, and 13-digit millisecond timestamps (which start with 1) never do;
a 16-digit id that happens to look like a card is masked (a false positive is the safe side). Digits right
after another digit, or after a digit and a dot (the decimals of ``0.4111111111111111``), are no card; after
any other character (``ref.4111111111111111``) they may be. A masked card keeps at most its first 6 and last
4 digits (PCI DSS).

Each masked place is reported as a path (``request_repr.headers.Authorization``, ``items[2].token``) so a
reader knows what was hidden.

Speed: the walk runs on every record, so a string is handed to a regular expression only when a test done in
C says that pattern could match it: a character or word every match must contain (``=``, ``@``, ``<``,
``)=(``, ``eyJ``, ``PRIVATE KEY``, ``bearer``/``basic``/``digest`` in any case) and the minimum length of a
match; for card numbers, a run of 13 digits with nothing but spaces or dashes between them; for XML, a
sensitive name among the distinct tag and attribute names of the text (so an HTML page costs no Python call
per tag). ``REDACT_PATTERNS`` have no such test: with any configured, every string of five characters or more
is searched. Dict keys pass the same tests as values, once per distinct key: a key found harmless is
remembered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

MASK = "[REDACTED]"

# Compared after normalisation: lower case, without "-", "_", " " and trailing digits.
SENSITIVE_KEYS = frozenset(
    {
        # headers
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "xapikey",
        "xcsrftoken",
        "xxsrftoken",
        "xauthtoken",
        "xamzsecuritytoken",
        # body and query keys
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "tokens",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "clientsecret",
        "apikey",
        "csrfmiddlewaretoken",
        "sessionid",
        "sessionkey",
        "code",
        "sig",
        "signature",
        "xamzsignature",
        "xamzcredential",
        "privatekey",
        "otp",
        "pin",
        # card data
        "cardnumber",
        "creditcard",
        "ccnumber",
        "cardno",
        "cvv",
        "cvc",
        "cvn",
        "securitycode",
    }
)
SENSITIVE_SUFFIXES = (
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "apikey",
    "apikeys",
    "accesstokens",
    "refreshtokens",
    "authtokens",
    "apitokens",
    "privatekey",
    "secretkey",
    "secretaccesskey",
    "signature",
    "credential",
    "credentials",
    "sessionid",
    "cardnumber",
    "authorization",
)

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|\Z)", re.DOTALL
)
# A credential after the scheme word: 8+ token characters with a digit or symbol, or 20+ letters (so that
# "basic authentication" in prose stays).
_AUTH_SCHEME = re.compile(
    r"\b(Bearer|Basic|Digest)(\s+)(?:(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}|[A-Za-z]{20,})",
    re.IGNORECASE,
)
# The password runs to the last "@" that a host follows (a raw "@" or "/" may be part of it), unless it starts
# like a port and a path ("https://host:8080/@ada" has no password).
_URL_PASSWORD = re.compile(
    r"""(://[^/\s:@\[\]]*:)(?!\d*/)([^\s"'<>\\]{1,256})(@)(?=[^\s@/?#"'<>\\]*(?:[/?#\s"'<>\\]|$))"""
)
# Its lead is a character set (no "^" alternative), which the regex engine searches for fast; a pair at the
# very start of a text gets a space as its lead (see _mask_key_value_pairs).
_KEY_EQUALS_VALUE = re.compile(r"""([?&;#\s])([A-Za-z0-9_.%\-\[\]]{1,64})=([^&#;\s"'<>]+)""")
# A quoted key, its colon, and the start of its value: a whole string or number, or the opening bracket of a
# list or object (masked up to its closing bracket, see _closing_bracket).
_QUOTED_KEY_VALUE = re.compile(
    r"""(["'])([^"'\\\n]{1,64})\1(\s*:\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|-?\d[\d.eE+-]*|[\[{])"""
)
# What _closing_bracket steps over: quoted strings (maybe cut), brackets, and runs of anything else.
_BRACKET_TOKENS = re.compile(r""""(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[\[{\]}]|[^"'\[\]{}]+""")
# PostgreSQL's "Key (api_token)=(tok_123) already exists.", also composite: "Key (a, b)=(1, 2)". The value may
# hold one level of parentheses; a cut message has no closing one.
_DB_KEY_VALUE = re.compile(r"\(([^()\n]{1,256})\)=\(((?:[^()\n]|\([^()\n]*\)?)*)(\)?)")
# XML: an element's text (or CDATA) right after its opening tag, and a quoted attribute value. Both run only
# when a sensitive name is among the names found by the two patterns after them, which cost no Python call
# per tag or attribute (HTML has hundreds); an attribute name is read backwards from its "=" and quote.
_XML_ELEMENT = re.compile(
    r"<([A-Za-z_][\w.:-]{0,63})(\s[^<>]*)?>(<!\[CDATA\[.*?(?:\]\]>|\Z)|[^<]+)", re.DOTALL
)
_XML_ATTRIBUTE = re.compile(r"""(?<![\w.:-])([A-Za-z_][\w.:-]{0,63})(\s*=\s*)(["'])([^\n]*?)(?:\3|$)""")
_XML_TAG_NAME = re.compile(r"<([A-Za-z_][\w.:-]{0,63})")
_REVERSED_ATTRIBUTE_NAME = re.compile(r"""["']\s*=\s*([\w.:-]{1,64})""")
# HTML elements whose name is also a sensitive key: <code> is program text, not an OAuth code.
_HTML_ELEMENTS = frozenset({"code"})
# Not after a digit, nor after a digit and a dot (the decimals of "0.4111111111111111").
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?<!\d\.)\d(?:[ -]?\d){12,18}(?!\d)")

_CARD_CANDIDATE_BYTES = re.compile(rb"(?<!\d)(?<!\d\.)\d(?:[ -]?\d){12,18}(?!\d)")
# Every key of SENSITIVE_KEYS and SENSITIVE_SUFFIXES, in any spelling, contains one of these (lower case);
# every secret-shaped value contains one of the markers (a card number is found by its digits).
_KEY_ROOTS = frozenset(
    {"pass", "pwd", "secret", "token", "key", "authoriz", "cookie", "session", "code", "sig", "credential"}
    | {"card", "cvv", "cvc", "cvn", "otp", "pin", "private", "ccnum", "cc_num", "cc-num", "cc num"}
)
_VALUE_MARKERS = frozenset({"eyj", "private key", "bearer", "basic", "digest"})
_NOTHING: frozenset[str] = frozenset()
# Deeper than this, a value is masked whole rather than walked (no secret can hide in what is not written).
_MAX_WALK_DEPTH = 64
# Strings shorter than this are not scanned ("pin=1" is the shortest text a pattern masks).
_MIN_SECRET_CHARS = 5
# The shortest match of the card, JWT, PEM and Bearer/Basic/Digest patterns (a card: 13 digits).
_MIN_SHAPED_SECRET_CHARS = 13
_MIN_CARD_DIGITS = 13
_MIN_CARD_INT = 10**12
_ASCII_DIGITS = b"0123456789"
# Maps ASCII text to "1" for a digit and "x" for anything else. With the card separators (space, dash)
# deleted, 13 "1"s in a row is what every card candidate (13+ digits, single separators) leaves behind.
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= code <= 0x39 else 0x78 for code in range(256))
_CARD_SEPARATORS = b" -"
_SHORTEST_CARD_RUN = b"1" * _MIN_CARD_DIGITS
_NORMALISE = str.maketrans("", "", "-_ ")
_BRACKETS = re.compile(r"[\[\]]+")
# Values that hide nothing, whatever their key (as written in JSON text, whitespace removed).
_EMPTY_VALUES = frozenset({'""', "''", "[]", "{}"})

# Where a value sits in a record: None for the record itself, else (where its container sits, its key or
# index, True when that is a list index).
_Location = tuple[Any, Any, bool] | None
_KEY_CACHE_LIMIT = 10_000


class Redactor:
    """Masks secrets in records; build one per settings, reuse it for every record (it is thread-safe).

    ``extra_keys`` are added to the sensitive keys (same normalisation); ``extra_patterns`` are regular
    expressions whose every match is masked in every string.
    """

    def __init__(self, extra_keys: Iterable[str] = (), extra_patterns: Iterable[str] = ()) -> None:
        extra_keys = tuple(extra_keys)
        self.keys = SENSITIVE_KEYS | {normalise_key(key) for key in extra_keys}
        patterns = list(extra_patterns)
        self._custom = re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None
        self._key_cache: dict[str, bool] = {}
        # Keys of records known to be harmless (most keys of most records): one set lookup per value walked.
        self._harmless_keys: set[Any] = set()
        extra_roots = {_longest_word(key) for key in extra_keys}
        self._roots = tuple(
            root.encode() for root in sorted(_KEY_ROOTS | _VALUE_MARKERS | extra_roots) if root
        )
        self._mask_pair = _pair_masker(self.is_sensitive_key)

    # --- keys ----------------------------------------------------------------------------------------------
    def is_sensitive_key(self, key: str) -> bool:
        """True when the value under ``key`` must be masked (see the module docstring)."""
        cached = self._key_cache.get(key)
        if cached is None:
            cached = any(self._is_sensitive_name(normalise_key(name)) for name in _key_names(key))
            if len(self._key_cache) >= _KEY_CACHE_LIMIT:
                self._key_cache.clear()
            self._key_cache[key] = cached
        return cached

    def _is_sensitive_name(self, name: str) -> bool:
        return name in self.keys or name.endswith(SENSITIVE_SUFFIXES)

    def _judge_walked_key(self, key: Any) -> bool | str:
        """The verdict on a key met in a walk (any type), which is not known to be harmless.

        True: its value must be masked. A string: the key holds a secret itself, and this is its masked text.
        False: nothing to do, and the key is remembered as harmless.
        """
        kind = type(key)
        if kind is str:
            if self.is_sensitive_key(key):
                return True
            if self._may_hide_secret(key):
                clean = self.scrub_text(key)
                if clean is not None:
                    return clean
        elif kind is int and key >= _MIN_CARD_INT:
            masked = mask_card_number(str(key))
            if masked is not None:
                return masked
        harmless = self._harmless_keys
        if len(harmless) >= _KEY_CACHE_LIMIT:
            harmless.clear()
        harmless.add(key)
        return False

    def _may_hide_secret(self, text: str) -> bool:
        """False when no pattern of :meth:`scrub_text` can match ``text`` (judged on its length and a few
        characters); the same test as the walk does inline for values."""
        size = len(text)
        return size >= _MIN_SHAPED_SECRET_CHARS or (
            size >= _MIN_SECRET_CHARS
            and ("=" in text or ":" in text or "<" in text or self._custom is not None)
        )

    # --- whole records -----------------------------------------------------------------------------------
    def redact(self, value: Any, skip: frozenset[str] = frozenset()) -> list[str]:
        """Mask secrets in ``value`` (a dict or list) in place; top-level keys in ``skip`` are not looked at.

        Returns the paths of what was masked, in the order found.
        """
        found: list[str] = []
        if isinstance(value, dict):
            self._walk_dict(value, None, found, skip, 0)
        elif isinstance(value, list):
            self._walk_list(value, None, found, 0)
        return found

    def may_hold_secrets(self, line: bytes) -> bool:
        """A cheap test on a record's JSON encoding: False means :meth:`redact` would find nothing.

        Every sensitive key, however spelt, contains one of a few lower-case roots, and every secret-shaped
        value has a marker (``eyj``, ``private``, ``bearer`` ...) or a long run of digits. For callers that
        already hold the JSON; the built-in plugin does not use it (walking a record is cheaper than
        encoding it and searching the line for every root).
        """
        lowered = line.lower().replace(b'"status_code"', b"")
        if b"%" in lowered:  # a percent-encoded key ("pass%77ord") shows its root once decoded
            lowered += b"\n" + unquote_to_bytes(lowered).lower()
        if any(root in lowered for root in self._roots):
            return True
        if b"@" in line and _URL_PASSWORD.search(line.decode("utf-8", "replace")) is not None:
            return True
        if _CARD_CANDIDATE_BYTES.search(line) is not None:
            return True
        return self._custom is not None and self._custom.search(line.decode("utf-8", "replace")) is not None

    def mask_keys(self, value: Any, names: Iterable[str], path: str) -> list[str]:
        """Mask the values of exactly ``names`` (case-insensitive) at any depth of ``value``, in place.

        Strings inside ``value`` are searched too, for ``name=value`` and ``"name": value`` pairs (a request
        body kept as text because it was cut or malformed).
        """
        wanted = {normalise_key(name) for name in names}
        found: list[str] = []
        self._mask_named(value, wanted, path, found)
        return found

    def mask_keys_in_text(self, text: str, names: Iterable[str]) -> str | None:
        """``text`` with the values of ``name=value`` and ``"name": value`` pairs of exactly ``names`` masked,
        or None when there were none."""
        return _mask_named_pairs(text, {normalise_key(name) for name in names})

    def _mask_named(self, value: Any, wanted: set[str], path: str, found: list[str]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                where = _join(path, key)
                if isinstance(key, str) and normalise_key(key) in wanted and _hides_something(item):
                    value[key] = masked_value(item)
                    found.append(where)
                elif isinstance(item, str):
                    clean = _mask_named_pairs(item, wanted)
                    if clean is not None:
                        value[key] = clean
                        found.append(where)
                else:
                    self._mask_named(item, wanted, where, found)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                clean = _mask_named_pairs(item, wanted) if isinstance(item, str) else None
                if clean is not None:
                    value[index] = clean
                    found.append(f"{path}[{index}]")
                else:
                    self._mask_named(item, wanted, f"{path}[{index}]", found)

    # The walk is the hot path of the worker (every record goes through it), hence its shape: one loop per
    # container type, the type tests inline, and the location of a value kept as a chain of
    # ``(parent, key, is_index)`` tuples that is turned into a path string only for what gets masked.
    # A string is handed to scrub_text only when some pattern could match it: under 13 characters only
    # key=value, scheme://user:password@, "key": value and the XML patterns fit, and each needs a "=", a ":"
    # or a "<" (REDACT_PATTERNS may match anything of 5 characters or more). A key is judged once: after
    # that it is in the harmless set, or it is sensitive (a cached look-up).

    def _walk_dict(
        self, value: dict[Any, Any], at: _Location, found: list[str], skip: frozenset[str], depth: int
    ) -> None:
        harmless = self._harmless_keys
        scan_all = self._custom is not None
        renamed: dict[Any, str] | None = None
        for key, item in value.items():
            if skip and key in skip:
                continue
            name = key  # what the path says: the key as it is written
            if key not in harmless:
                verdict = self._judge_walked_key(key)
                if verdict is True:
                    if _hides_something(item):
                        value[key] = masked = masked_value(item)
                        found.append(_path(at, key, False))
                        if type(masked) is dict or type(masked) is list:
                            self._scan_keys_of_masked(masked, (at, key, False), found, depth + 1)
                    continue
                if verdict is not False:
                    renamed = {} if renamed is None else renamed
                    name = renamed[key] = _unused_key(verdict, value, renamed)
                    found.append(_path(at, name, False))
            kind = type(item)
            if kind is str:
                size = len(item)
                if size >= _MIN_SHAPED_SECRET_CHARS or (
                    size >= _MIN_SECRET_CHARS and ("=" in item or ":" in item or "<" in item or scan_all)
                ):
                    clean = self.scrub_text(item)
                    if clean is not None:
                        value[key] = clean
                        found.append(_path(at, name, False))
            elif kind is dict or kind is list:
                if item:
                    if depth >= _MAX_WALK_DEPTH:
                        value[key] = MASK
                        found.append(_path(at, name, False))
                    elif kind is dict:
                        self._walk_dict(item, (at, name, False), found, _NOTHING, depth + 1)
                    else:
                        self._walk_list(item, (at, name, False), found, depth + 1)
            elif kind is int and item >= _MIN_CARD_INT:
                masked = mask_card_number(str(item))
                if masked is not None:
                    value[key] = masked
                    found.append(_path(at, name, False))
        if renamed:
            _rename_keys(value, renamed)

    def _scan_keys_of_masked(self, masked: Any, at: _Location, found: list[str], depth: int) -> None:
        """Walk a dict or list that :func:`masked_value` returned: only keys can still hold secrets."""
        if type(masked) is dict:
            self._walk_dict(masked, at, found, _NOTHING, depth)
        else:
            self._walk_list(masked, at, found, depth)

    def _walk_list(self, value: list[Any], at: _Location, found: list[str], depth: int) -> None:
        scan_all = self._custom is not None
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                size = len(item)
                if size >= _MIN_SHAPED_SECRET_CHARS or (
                    size >= _MIN_SECRET_CHARS and ("=" in item or ":" in item or "<" in item or scan_all)
                ):
                    clean = self.scrub_text(item)
                    if clean is not None:
                        value[index] = clean
                        found.append(_path(at, index, True))
            elif kind is dict or kind is list:
                if depth >= _MAX_WALK_DEPTH:
                    value[index] = MASK
                    found.append(_path(at, index, True))
                elif kind is dict:
                    self._walk_dict(item, (at, index, True), found, _NOTHING, depth + 1)
                else:
                    self._walk_list(item, (at, index, True), found, depth + 1)
            elif kind is int and item >= _MIN_CARD_INT:
                masked = mask_card_number(str(item))
                if masked is not None:
                    value[index] = masked
                    found.append(_path(at, index, True))

    # --- text ----------------------------------------------------------------------------------------------
    def scrub_text(self, text: str) -> str | None:
        """``text`` with every secret-shaped part masked, or None when nothing was found.

        Each pattern runs only when its gate (see the module docstring) lets it; most strings of a record
        (names, paths, content types, timestamps, UUIDs) pass a handful of substring tests and no regex.
        """
        original = text
        long_enough = len(text) >= _MIN_SHAPED_SECRET_CHARS
        if long_enough:
            if "PRIVATE KEY" in text:
                text = _PEM_PRIVATE_KEY.sub(MASK, text)
            if "eyJ" in text:
                text = _JWT.sub(MASK, text)
            if _may_name_auth_scheme(text):
                text = _AUTH_SCHEME.sub(rf"\1\2{MASK}", text)
        if "@" in text and "://" in text:
            text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
        if "=" in text:
            text = _mask_key_value_pairs(text, self._mask_pair)
            if ")=(" in text:
                text = _DB_KEY_VALUE.sub(self._mask_db_pair, text)
            if ('"' in text or "'" in text) and self._may_hide_xml_attribute(text):
                text = _XML_ATTRIBUTE.sub(self._mask_attribute, text)
        if ":" in text and ('"' in text or "'" in text):
            text = _mask_quoted_pairs(text, self.is_sensitive_key)
        if "<" in text and ">" in text and self._may_hide_xml_element(text):
            text = _XML_ELEMENT.sub(self._mask_element, text)
        if long_enough and _may_hold_card_number(text):
            text = _CARD_CANDIDATE.sub(_mask_card_match, text)
        if self._custom is not None:
            text = self._custom.sub(MASK, text)
        return None if text == original else text

    def _mask_db_pair(self, match: re.Match[str]) -> str:
        """``(a, api_token)=(x, tok_1)`` -> ``(a, api_token)=(x, [REDACTED])``; every value when they cannot
        be told apart (a value holding ``", "``)."""
        columns, values, close = match.groups()
        sensitive = [self.is_sensitive_key(column.strip().strip('"')) for column in columns.split(",")]
        if not any(sensitive):
            return match.group(0)
        parts = values.split(", ")
        if len(parts) != len(sensitive):
            return f"({columns})=({MASK}{close}"
        shown = ", ".join(
            MASK if hide and value else value for hide, value in zip(sensitive, parts, strict=True)
        )
        return f"({columns})=({shown}{close}"

    def _may_hide_xml_attribute(self, text: str) -> bool:
        """False when no quoted attribute of ``text`` has a sensitive name (found in C, read backwards)."""
        names = set(_REVERSED_ATTRIBUTE_NAME.findall(text[::-1]))
        return any(self._is_sensitive_xml_name(name[::-1]) for name in names)

    def _may_hide_xml_element(self, text: str) -> bool:
        """False when no tag of ``text`` has a sensitive name."""
        names = set(_XML_TAG_NAME.findall(text))
        return any(self._is_sensitive_xml_name(name, element=True) for name in names)

    def _is_sensitive_xml_name(self, name: str, element: bool = False) -> bool:
        local = name.rpartition(":")[2]  # without its namespace prefix: ns:Password -> Password
        return not (element and local.lower() in _HTML_ELEMENTS) and self.is_sensitive_key(local)

    def _mask_attribute(self, match: re.Match[str]) -> str:
        name, equals, quote, value = match.groups()
        if not value or value == MASK or not self._is_sensitive_xml_name(name):
            return match.group(0)
        return f"{name}{equals}{quote}{MASK}{quote}"

    def _mask_element(self, match: re.Match[str]) -> str:
        name, attributes, content = match.groups()
        if content.isspace() or content == MASK or not self._is_sensitive_xml_name(name, element=True):
            return match.group(0)
        return f"<{name}{attributes or ''}>{MASK}"


def normalise_key(key: str) -> str:
    """``"X-Api-Key"`` -> ``"xapikey"``; ``"password2"`` -> ``"password"``."""
    return key.lower().translate(_NORMALISE).rstrip("0123456789") or key.lower()


def _key_names(key: str) -> list[str]:
    """The names ``key`` is judged by: ``key`` itself, percent escapes decoded; for a nested-form key
    (``user[password]``, ``items[0][api_key]``) also each bracketed part but indexes, and the whole without
    brackets."""
    if "%" in key:
        key = unquote(key)
    if "[" not in key and "]" not in key:
        return [key]
    parts = [part for part in _BRACKETS.split(key) if part and not part.isdigit()]
    return [*parts, _BRACKETS.sub("", key)]


def _pair_masker(is_sensitive: Callable[[str], bool]) -> Callable[[re.Match[str]], str]:
    """The :data:`_KEY_EQUALS_VALUE` callback that masks the value of a pair whose key ``is_sensitive``."""

    def mask(match: re.Match[str]) -> str:
        lead, key, value = match.groups()
        if value == MASK or not is_sensitive(key):
            return match.group(0)
        return f"{lead}{key}={MASK}"

    return mask


def _mask_key_value_pairs(text: str, mask: Callable[[re.Match[str]], str]) -> str:
    """:data:`_KEY_EQUALS_VALUE` applied to ``text`` with ``mask``, a pair at its very start included."""
    return _KEY_EQUALS_VALUE.sub(mask, " " + text)[1:]


def _mask_quoted_pairs(text: str, is_sensitive: Callable[[str], bool]) -> str:
    """``text`` with the value of every ``"key": value`` pair whose key ``is_sensitive`` masked.

    A list or object value is masked whole, up to its closing bracket, or to the end of ``text`` when it was
    cut (``{"token": {"a": "b"`` -> ``{"token": "[REDACTED]"``).
    """
    pieces: list[str] = []
    done = position = 0
    while (match := _QUOTED_KEY_VALUE.search(text, position)) is not None:
        quote, key, colon, value = match.groups()
        if not is_sensitive(key):
            position = match.end()  # inside a list or object, pairs are still looked at
            continue
        end = match.end()
        if value == "[" or value == "{":  # looked for only here: a masked value is skipped whole, so linear
            end = _closing_bracket(text, match.start(4))
            value = "".join(text[match.start(4) : end].split())
        if value in _EMPTY_VALUES:
            position = match.end()
            continue
        pieces += (text[done : match.start()], f'{quote}{key}{quote}{colon}"{MASK}"')
        done = position = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _closing_bracket(text: str, start: int) -> int:
    """The index just past the bracket closing the one at ``text[start]``, or ``len(text)`` when it is cut.

    Brackets inside quoted strings do not count.
    """
    depth = 0
    for token in _BRACKET_TOKENS.finditer(text, start):
        bracket = token.group()
        if bracket == "[" or bracket == "{":
            depth += 1
        elif bracket == "]" or bracket == "}":
            depth -= 1
            if depth == 0:
                return token.end()
    return len(text)


def _mask_named_pairs(text: str, wanted: set[str]) -> str | None:
    """``text`` with the values of ``name=value`` and ``"name": value`` pairs masked when the name (percent
    escapes decoded, normalised) is in ``wanted``; None when there were none."""

    def is_wanted(key: str) -> bool:
        return normalise_key(unquote(key) if "%" in key else key) in wanted

    clean = text
    if "=" in clean:
        clean = _mask_key_value_pairs(clean, _pair_masker(is_wanted))
    if ":" in clean and ('"' in clean or "'" in clean):
        clean = _mask_quoted_pairs(clean, is_wanted)
    return None if clean == text else clean


def _unused_key(key: str, holder: dict[Any, Any], renamed: dict[Any, str]) -> str:
    """``key``, or ``key (2)``, ``key (3)`` ...: the first that is neither a key of ``holder`` nor a new name
    given already."""
    candidate, number = key, 2
    while candidate in holder or candidate in renamed.values():
        candidate, number = f"{key} ({number})", number + 1
    return candidate


def _rename_keys(holder: dict[Any, Any], renamed: dict[Any, str]) -> None:
    """Rename keys of ``holder`` in place (``renamed`` maps old to new), keeping their order."""
    items = [(renamed.get(key, key), item) for key, item in holder.items()]
    holder.clear()
    holder.update(items)


def literal_masker(literals: Iterable[str]) -> re.Pattern[str]:
    """One expression that finds any of ``literals`` (non-empty), the longest first where they overlap."""
    ordered = sorted(set(literals), key=len, reverse=True)
    return re.compile("|".join(re.escape(literal) for literal in ordered))


def mask_literals(value: Any, pattern: re.Pattern[str], path: str, found: list[str], depth: int = 0) -> Any:
    """``value`` with every match of ``pattern`` (see :func:`literal_masker`) in its strings masked; dicts
    and lists are changed in place, keys are kept. The path of each changed string is added to ``found``.

    Deeper than the redactor walks, a container is masked whole.
    """
    if type(value) is str:
        masked = pattern.sub(MASK, value)
        if masked != value:
            found.append(path)
        return masked
    if not isinstance(value, (dict, list)):
        return value
    if depth >= _MAX_WALK_DEPTH:
        found.append(path)
        return MASK
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = mask_literals(item, pattern, _join(path, key), found, depth + 1)
    else:
        for index, item in enumerate(value):
            value[index] = mask_literals(item, pattern, f"{path}[{index}]", found, depth + 1)
    return value


def masked_value(value: Any) -> Any:
    """``value`` with every leaf that hides something masked; dicts and lists keep their shape."""
    if isinstance(value, dict):
        return {key: masked_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked_value(item) for item in value]
    return MASK if _hides_something(value) else value


def _hides_something(value: Any) -> bool:
    if isinstance(value, (dict, list)):
        return any(_hides_something(item) for item in (value.values() if isinstance(value, dict) else value))
    return value is not None and value != "" and type(value) is not bool and value != MASK


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _path(at: _Location, key: Any, is_index: bool) -> str:
    """``request_repr.headers.Authorization``, ``items[2].token``: the path of ``key`` under ``at``."""
    steps = [(key, is_index)]
    while at is not None:
        at, step, step_is_index = at
        steps.append((step, step_is_index))
    steps.reverse()
    return "".join(
        f"[{step}]" if step_is_index else f".{step}" if position else str(step)
        for position, (step, step_is_index) in enumerate(steps)
    )


def _may_name_auth_scheme(text: str) -> bool:
    """False when :data:`_AUTH_SCHEME` cannot match: no ``bearer``, ``basic`` or ``digest`` in any case."""
    lowered = text.lower()
    return "bearer" in lowered or "basic" in lowered or "digest" in lowered


def _may_hold_card_number(text: str) -> bool:
    """False when :data:`_CARD_CANDIDATE` cannot match: no run of 13 digits, only spaces or dashes between.

    Done in C on the ASCII bytes (a UUID or a timestamp has plenty of digits, but letters, colons or dots
    between them); ``\\d`` also matches the digits of other scripts, so any other text is left to the regular
    expression.
    """
    if not text.isascii():
        return True
    data = text.encode("ascii")
    if len(data) - len(data.translate(None, _ASCII_DIGITS)) < _MIN_CARD_DIGITS:  # the quickest "no"
        return False
    return _SHORTEST_CARD_RUN in data.translate(_DIGITS_AS_ONES, _CARD_SEPARATORS)


def _longest_word(key: str) -> str:
    words = re.findall(r"[a-z]+", key.lower())
    return max(words, key=len) if words else key.lower()


# --- payment cards ------------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by every payment card number."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def has_card_prefix(digits: str) -> bool:
    """True when ``digits`` starts with an issuer prefix of a card brand and has that brand's length."""
    length = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":  # Visa
        return length in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return length == 16
    if two in (34, 37):  # American Express
        return length == 15
    if four == 6011 or 644 <= int(digits[:3]) <= 649 or two == 65:  # Discover
        return 16 <= length <= 19
    if 3528 <= four <= 3589:  # JCB
        return 16 <= length <= 19
    if 300 <= int(digits[:3]) <= 305 or two in (36, 38, 39):  # Diners Club
        return 14 <= length <= 19
    if two == 62:  # UnionPay
        return 16 <= length <= 19
    if four in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):  # Maestro
        return 12 <= length <= 19
    return False


def mask_card_number(candidate: str) -> str | None:
    """The masked card number if ``candidate`` (digits, spaces, dashes) is one, else None."""
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not digits.isdigit():
        return None
    if not has_card_prefix(digits) or not luhn_valid(digits):
        return None
    shown_head = 6 if len(digits) >= 15 else 0
    hidden = len(digits) - shown_head - 4
    return f"{digits[:shown_head]}{'*' * hidden}{digits[-4:]}"


def _mask_card_match(match: re.Match[str]) -> str:
    masked = mask_card_number(match.group(0))
    return match.group(0) if masked is None else masked
