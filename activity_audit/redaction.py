"""Finding secrets in a record and masking them: sensitive keys at any depth, and secret-shaped text.

:class:`Redactor` walks a record (plain JSON values) in place. It keeps every key and replaces values:

- the value of a **sensitive key**, at any depth, whatever its type (``None``, booleans and empty strings are
  left alone: they hide nothing). Keys are compared case-insensitively with ``-``, ``_``, ``.``, spaces and a
  trailing number ignored, so ``X-Api-Key``, ``api_key``, ``apiKey``, ``api.key`` and ``API-KEY`` are one key,
  and ``password2`` is ``password``. A key is sensitive when it is in :data:`SENSITIVE_KEYS` (or
  ``REDACT_KEYS``) or ends with one of :data:`SENSITIVE_SUFFIXES` (``new_password``, ``github_token``), also
  once a last word of :data:`_QUALIFIER_WORDS` is dropped (``password_confirmation``, ``password_hash``), or
  when its last words are ``pass``, ``pwd``, ``auth``, ``access key`` or ``auth key`` (``db_pass``,
  ``MYSQL_PWD``, ``basic_auth``; not ``bypass``, ``author``). Percent and JSON ``\\u`` escapes are decoded
  first (``pass%77ord``, ``pass\\u0077ord``, also in JSON text), and a nested-form key (``user[password]``,
  ``items[0][api_key]``) is sensitive when one of its bracketed parts is, or the whole without brackets.
- the value of a named value whose name is a sensitive key: ``{"name": "DB_PASSWORD", "value": ...}``
  (also ``key``/``value``, ``Name``/``Value``, ``Key``/``Value``) and, in a list of pairs,
  ``["Authorization", ...]``.
- inside any string: JSON Web Tokens, PEM private keys, the tokens of GitHub, Stripe, Slack, OpenAI,
  Anthropic, Google, GitLab, npm, PyPI, Hugging Face, SendGrid, Shopify and DigitalOcean, AWS access key ids
  (their prefix kept), the secret path of Slack and Discord webhook URLs, ``Bearer``/``Basic``/``Digest``
  credentials (every Digest parameter), the password of ``scheme://user:password@host`` (one with a raw quote,
  backslash or ``<`` too; the slashes maybe escaped, ``https:\\/\\/``), a token-like user name of
  ``scheme://user@host``, payment card numbers, whatever ``REDACT_PATTERNS`` match, the value of a sensitive
  header line (``Authorization: Token x``, ``X-Api-Key: x``), the word after a sensitive name and ``": "``,
  ``":"`` or ``" = "`` in prose (``password: x``; not a host and port, ``db.secret:5432``), and the value next
  to a sensitive key in ``key=value`` pairs (query strings and fragments, form text, signed URLs), ``"key":
  value`` pairs (JSON text, e.g. a truncated body, also JSON held in a JSON string, its quotes escaped; a list
  or object value is masked whole), database errors (``Key (api_token)=(...)``) and XML
  (``<password>...</password>``, ``password="..."``). A string holding percent escapes is also searched
  decoded, and what is found there is masked in the encoded text.
- secret-shaped text in a dict **key** (``{"<JWT>": ""}`` from a bare query string): the key is replaced by
  its masked text; keys that become equal are kept apart with a suffix (``[REDACTED] (2)``).
- integers that are payment card numbers (values and keys).

Card numbers are 13 to 19 digits, optionally grouped with spaces, dashes or dots (between groups of 3 to 6
digits), that pass the Luhn check **and** start with an issuer prefix (Visa, Mastercard, Amex, Discover, JCB,
Diners, UnionPay, Maestro's fixed prefixes). Ordinary ids rarely pass both, and 13-digit millisecond
timestamps (which start with 1) never do; a 16-digit id that happens to look like a card is masked (a false
positive is the safe side). Digits right after another digit, or after a digit and a dot (the decimals of
``0.4111111111111111``), are no card; after any other character (``ref.4111111111111111``) they may be. A
masked card keeps at most its first 6 and last 4 digits (PCI DSS).

Each masked place is reported as a path (``request_repr.headers.Authorization``, ``items[2].token``) so a
reader knows what was hidden.

Speed: the walk runs on every record, so a string is handed to a regular expression only when a test done in
C says that pattern could match it: a character or word every match must contain (``=``, ``@``, ``<``, ``%``,
``)=(``, ``eyJ``, ``PRIVATE KEY``, ``bearer``/``basic``/``digest`` in any case, a vendor prefix) and the
minimum length of a match; for card numbers, a run of 13 digits with nothing but spaces or dashes between
them; for XML and header lines, a sensitive name among the distinct tag and attribute names, or names before a
colon, of the text (so an HTML page costs no Python call per tag). ``REDACT_PATTERNS`` have no such test:
with any configured, every string of five characters or more is searched. Dict keys pass the same tests as
values, once per distinct key: a key found harmless is remembered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial
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
        # session cookies of PHP, Express, Laravel, CodeIgniter
        "phpsessid",
        "connectsid",
        "laravelsession",
        "cisession",
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
        "authcode",
        "authorizationcode",
        "sig",
        "signature",
        "xamzsignature",
        "xamzcredential",
        "privatekey",
        "secretkeybase",
        "otp",
        "totp",
        "mfacode",
        "passcode",
        "jwt",
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
    "subscriptionkey",
    "functionskey",
    "masterkey",
    "accountkey",
    "encryptionkey",
    "signingkey",
    "signature",
    "credential",
    "credentials",
    "sessionid",
    "cardnumber",
    "authorization",
    "jwt",
)
# A key is also sensitive when a word of it names what the value is derived from or compared with
# (password_confirmation, passwordConfirm, password_digest, apiKeyValue, code_verifier): these words are
# dropped from its end before it is judged again.
_QUALIFIER_WORDS = frozenset(
    {"confirmation", "confirm", "repeat", "again", "verify", "verification", "verifier"}
    | {"hash", "hashed", "digest", "value", "plain", "plaintext", "raw", "encrypted"}
)
# Endings judged by whole words, because as plain text endings they would catch ordinary words: "db_pass"
# and "dbPass" but not "bypass" or "compass", "basic_auth" but not "oauth", "access_key" but not the HTML
# attribute "accesskey", "MYSQL_PWD" but not "OLDPWD" (a directory).
_SECRET_WORD_ENDINGS = frozenset({("pass",), ("pwd",), ("auth",), ("access", "key"), ("auth", "key")})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
# Header names whose value is a credential even without a "-" in the name (see _HEADER_LINE_START).
_SINGLE_WORD_HEADERS = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})
_AUTHORIZATION_HEADERS = frozenset({"authorization", "proxyauthorization"})

# A JSON Web Token: a header (base64url JSON, so "eyJ"), a payload and a signature (maybe empty), at the start
# of a run of base64url characters (a start inside one would read the run again for each "eyJ" of "eyJ-eyJ-",
# quadratic). The header and payload have 8 characters or more, or fewer when the payload is JSON too
# ("eyJhbGciOi.eyJzdWIi.sig"), which a word that starts with "eyJ" is not.
_JWT = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ(?:[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{2,})"
    r"\.[A-Za-z0-9_-]*"
)
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|\Z)", re.DOTALL
)
# A credential after the scheme word: 8+ token characters with a digit or symbol, or 20+ letters (so that
# "basic authentication" in prose stays).
_AUTH_SCHEME = re.compile(
    r"\b(Bearer|Basic|Digest)(\s+)(?:(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}|[A-Za-z]{20,})",
    re.IGNORECASE,
)
# A credential of 8 to 19 letters only, which _AUTH_SCHEME leaves: masked after "Bearer" unless it is one of
# _BEARER_PROSE_WORDS, and after any scheme word when a lower-case letter is followed by an upper-case one, as
# in Base64 ("Basic dXNlcjpwYXNz"); see _mask_short_credential.
_SHORT_CREDENTIAL = re.compile(
    r"\b(Bearer|Basic|Digest)(\s+)([A-Za-z]{8,19})(?![A-Za-z0-9._~+/=-])", re.IGNORECASE
)
_MIXED_CASE = re.compile(r"[a-z][A-Z]")
# Words that follow "Bearer" in prose ("Bearer authentication failed"), which stay.
_BEARER_PROSE_WORDS = frozenset(
    {"authentication", "authorization", "authorisation", "credential", "credentials", "required"}
    | {"expected", "provided", "security", "instrument", "instruments", "mechanism"}
)
# A JSON string whose quotes are escaped, inside JSON text (``\"a\\\"b\"`` is the string ``a"b``): plain
# characters, escapes of the outer text (``\n``), and escapes of the inner string (``\\`` and what follows).
# Each alternative starts differently, so it is read once; without its closing ``\"`` it runs to the end.
_ESCAPED_STRING = r"""\\"(?:[^"\\]|\\[^"\\]|\\\\(?:\\.|[^"\\]))*(?:\\")?"""
# Digest credentials (RFC 7616) are a list of auth-params, "response" among them: the whole list is masked,
# its parameters separated by commas or, as some logs print them, spaces. The first name must be a Digest
# parameter, so that "digest count=5" in prose stays.
_AUTH_PARAM_VALUE = rf"""(?:"(?:[^"\\]|\\.)*"?|{_ESCAPED_STRING}|[^\s,"\\]*)"""
_DIGEST_PARAMS = re.compile(
    r"\b(Digest)(\s+)(?=(?:username\*?|realm|nonce|uri|response|algorithm|cnonce|opaque|qop|nc|userhash)=)"
    rf"[\w*-]+={_AUTH_PARAM_VALUE}(?:(?:\s*,\s*|\s+)[\w*-]+={_AUTH_PARAM_VALUE})*",
    re.IGNORECASE,
)
# Vendor tokens, recognisable anywhere by their prefix, which stays visible: GitHub, Stripe secret and
# restricted keys, Slack.
_VENDOR_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:(gh[pousr]_)[A-Za-z0-9]{36,}|(github_pat_)[A-Za-z0-9_]{22,}"
    r"|([sr]k_(?:live|test)_)[A-Za-z0-9]{16,}|(xox[abprs]-)[0-9]+-[A-Za-z0-9-]{8,})"
)
# More vendors' tokens, each behind a marker every one of its matches holds (tested in C first), and each
# pattern led by its literal prefix, which the regular expression engine searches for fast: OpenAI and
# Anthropic ("sk-" and 32 characters or more, a digit among them), Google API keys, GitLab, npm, PyPI,
# Hugging Face, SendGrid, Shopify and DigitalOcean tokens, Stripe webhook secrets, and the secret path of
# Slack and Discord webhook URLs. The prefix stays visible. A token made of word characters and "-" starts
# only where a run of them starts (checked after the prefix), so "sk-sk-sk-..." is read once, not once per
# "sk-".
_RUN_CHAR = "[A-Za-z0-9_-]"
_RUN_END = rf"(?!{_RUN_CHAR})"


def _led_by(prefix: str, body: str) -> re.Pattern[str]:
    """A pattern for ``prefix`` (a literal, kept visible) then ``body``, at the start of a run."""
    literal = re.escape(prefix)
    return re.compile(rf"({literal})(?<!{_RUN_CHAR}{literal}){body}")


_OPENAI_TOKEN = _led_by("sk-", rf"(?={_RUN_CHAR}*[0-9]){_RUN_CHAR}{{32,}}")
_GOOGLE_API_KEY = _led_by("AIza", rf"{_RUN_CHAR}{{35}}{_RUN_END}")
_GITLAB_TOKENS = tuple(
    _led_by(prefix, rf"{_RUN_CHAR}{{20,}}") for prefix in ("glpat-", "gldt-", "glrt-", "glptt-", "glsoat-")
)
_PYPI_TOKEN = _led_by("pypi-", rf"AgE{_RUN_CHAR}{{50,}}")
_NPM_TOKEN = _led_by("npm_", rf"[A-Za-z0-9]{{36}}{_RUN_END}")
_HUGGING_FACE_TOKEN = _led_by("hf_", rf"[A-Za-z]{{34}}{_RUN_END}")
_SHOPIFY_TOKEN = re.compile(
    rf"(shp(?:at|ss|ca|pa)_)(?<!{_RUN_CHAR}shp[a-z]{{2}}_)[a-fA-F0-9]{{32}}{_RUN_END}"
)
_DIGITALOCEAN_TOKEN = re.compile(rf"(do[opr]_v1_)(?<!{_RUN_CHAR}do[a-z]_v1_)[a-f0-9]{{64}}{_RUN_END}")
_STRIPE_WEBHOOK_SECRET = _led_by("whsec_", r"[A-Za-z0-9+/=]{24,}")
_SENDGRID_KEY = _led_by("SG.", rf"{_RUN_CHAR}{{22}}\.{_RUN_CHAR}{{43}}{_RUN_END}")
_SLACK_WEBHOOK = re.compile(r"(hooks\.slack\.com/services/)[A-Za-z0-9_/-]+")
_DISCORD_WEBHOOK = re.compile(r"(discord(?:app)?\.com/api/webhooks/[0-9]+/)[A-Za-z0-9_-]+")
# Every pattern above with the marker it is looked for by (see _mask_long_vendor_tokens): the reference for
# the tests that check the markers never skip a token.
_LONG_VENDOR_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sk-", _OPENAI_TOKEN),
    ("AIza", _GOOGLE_API_KEY),
    *(("gl", pattern) for pattern in _GITLAB_TOKENS),
    ("pypi-", _PYPI_TOKEN),
    ("npm_", _NPM_TOKEN),
    ("hf_", _HUGGING_FACE_TOKEN),
    ("shp", _SHOPIFY_TOKEN),
    ("_v1_", _DIGITALOCEAN_TOKEN),
    ("whsec_", _STRIPE_WEBHOOK_SECRET),
    ("SG.", _SENDGRID_KEY),
    ("hooks.slack.com/", _SLACK_WEBHOOK),
    ("/api/webhooks/", _DISCORD_WEBHOOK),
)
# The shortest text one of _LONG_VENDOR_TOKENS can match: a GitLab deploy or runner token ("gldt-" and 20).
_SHORTEST_LONG_TOKEN = 25
# AWS access key ids, long-term (AKIA) and temporary (ASIA): the prefix, then 16 upper-case letters and
# digits; the prefix stays visible.
_AWS_ACCESS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_AWS_ACCESS_KEY_ID_BYTES = re.compile(rb"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_GITHUB_TOKEN_PREFIX = re.compile(r"gh[pousr]_")  # a literal start, which the regex engine searches for fast
# Django's stored password hashes ("pbkdf2_sha256$<iterations>$<salt>$<hash>" ...), which the SQL debug log of
# django.db.backends shows in its statements and parameters; the algorithm stays visible.
_PASSWORD_HASH = re.compile(
    r"(?<![A-Za-z0-9_])((?:pbkdf2_sha256|pbkdf2_sha1|argon2|bcrypt_sha256|bcrypt|scrypt)\$)[^\s'\")\]]+"
)
_PASSWORD_HASH_MARKERS = ("pbkdf2_sha", "argon2$", "bcrypt", "scrypt$")
# What may follow the "@" of a URL's user information: a host, then the end of the URL.
_URL_HOST_FOLLOWS = r"""(?=[^\s@/?#"'<>\\]*(?:[/?#\s"'<>\\]|$))"""
# The "://" after a scheme, its slashes maybe escaped as in JSON text ("https:\/\/", or "https:\\\/\\\/" in
# JSON held in a JSON string).
_SCHEME_SLASHES = r"""://|:\\+/\\*/"""
# The password runs to the last "@" that a host follows (a raw "@" or "/" may be part of it), unless it starts
# like a port and a path ("https://host:8080/@ada" has no password). Failing that, a password holding a raw
# quote, backslash or "<" runs to the first "@", without "/" or "@"; see _is_url_password for its quotes.
# What this leaves is looked at again by _mask_other_url_passwords.
_URL_PASSWORD_START = rf"""((?:{_SCHEME_SLASHES})[^/\s:@\[\]]*:)(?!\d*\\*/)"""
_URL_PASSWORD = re.compile(
    rf"""{_URL_PASSWORD_START}([^\s"'<>\\]{{1,256}}|[^\s@/>]{{1,256}})(@){_URL_HOST_FOLLOWS}"""
)
# For _mask_other_url_passwords: where a password may start, and what ends the stretch it may run in (a
# space, a quote, "<", ">", or a backslash but that of an escaped "/").
_URL_PASSWORD_STARTS = re.compile(_URL_PASSWORD_START)
_URL_STRETCH_END = re.compile(r"""[\s"'<>]|\\(?![\\/])""")
# A quote followed by what ends a quoted string in JSON or Python text: '"https://h:8080", "mail": "a@b.c"'
# holds no password.
_QUOTE_THAT_ENDS = re.compile(r"""["'](?:[\s,:;}\])>]|$)""")
# The user name of a scheme URL, with no password or a masked one, when it looks like a token (see
# _looks_like_token): "https://<token>@github.com/org/repo.git".
_URL_TOKEN_USER = re.compile(
    rf"""({_SCHEME_SLASHES})([A-Za-z0-9_~+=.-]{{16,256}})((?::{re.escape(MASK)})?@){_URL_HOST_FOLLOWS}"""
)
# Its lead is a character set (no "^" alternative), which the regex engine searches for fast; a pair at the
# very start of a text gets a space as its lead (see _mask_key_value_pairs). The "=" may have spaces around
# it, as in prose and configuration text ("password = hunter2"). The value, up to _VALUE_END, is
# read only for a sensitive key: a value that is kept is searched again for pairs, and reading it each time
# would make "?a=?a=?a=..." quadratic.
_KEY_EQUALS = re.compile(r"""[?&;#\s]([A-Za-z0-9_.%\-\[\]]{1,64})(=|[ \t]+=(?!=)[ \t]*)""")
_VALUE_END = re.compile(r"""[&#;\s"'<>]""")
# A quoted key, its colon, and the start of its value: a whole string (a Python bytes literal too, as in the
# repr of a dict of headers: 'X-Amz-Security-Token': b'...') or number, or the opening bracket of a list or
# object (masked up to its closing bracket, see _closing_bracket). The key may spell characters as JSON
# escapes ("pass\u0077ord"), decoded before it is judged (_decode_json_escapes).
_QUOTED_KEY_VALUE = re.compile(
    r"""(["'])((?:[^"'\\\n]|\\u[0-9A-Fa-f]{4}){1,64})\1(\s*:\s*)"""
    r"""(b?"(?:[^"\\]|\\.)*"?|b?'(?:[^'\\]|\\.)*'?|-?\d[\d.eE+-]*|[\[{])"""
)
# The same inside a JSON string that holds JSON (``"raw": "{\"password\": \"x\"}"``): the quotes escaped,
# and the backslash of a key's escape too ("pass\\u0077ord").
_ESCAPED_KEY_VALUE = re.compile(
    r"""(\\")((?:[^"'\\\n]|\\\\u[0-9A-Fa-f]{4}){1,64})\\"(\s*:\s*)"""
    rf"""({_ESCAPED_STRING}|-?\d[\d.eE+-]*|[\[{{])"""
)
# A JSON "\uXXXX" escape, its backslash maybe escaped once more (in JSON held in a JSON string).
_JSON_ESCAPE = re.compile(r"\\{1,2}u([0-9A-Fa-f]{4})")
# What _closing_bracket steps over: quoted strings (maybe cut), brackets, and runs of anything else.
_BRACKET_TOKENS = re.compile(r""""(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[\[{\]}]|[^"'\[\]{}]+""")
# The same for escaped JSON; a bare quote is the end of the JSON string that holds it.
_ESCAPED_BRACKET_TOKENS = re.compile(_ESCAPED_STRING + r"""|[\[{\]}]|"|[^"\\\[\]{}]+|\\""")
# A name and its colon in text. An HTTP header line ("Authorization: Token x", "X-Api-Key: x"), a name spelt
# like a header, with a "-" or in _SINGLE_WORD_HEADERS, has its value masked to the end of the line or to a
# quote or backslash (the end of the string in JSON or Python text). Any other sensitive name followed by a
# space ("password: hunter2", "spring.datasource.password: x") has one word masked, or one quoted string
# (_PROSE_VALUE), unless it is a word of _PROSE_WEAK_KEYS: "code: 200" and "token: expired" in prose stay.
# The names are first read backwards from their colon, a search done in C (_may_hide_header_line).
_HEADER_LINE_START = re.compile(r"(?<![\w.-])([A-Za-z_][\w.-]{0,63})(:[ \t]*)")
_HEADER_VALUE_END = re.compile(r"""[\r\n"'\\]""")
# Backwards, a name ends with a letter or "_" (its first): the digits before the colons of a time are no name.
_REVERSED_HEADER_NAME = re.compile(r":([\w.-]{0,63}[A-Za-z_])(?![\w.-])")
# The value of a name in prose: a quoted string (its quotes maybe escaped, in JSON text), or a word.
# A port number after a host name's colon: 1 to 5 digits, not followed by another word character.
_PORT = re.compile(r"[0-9]{1,5}(?![\w.-])")
_PROSE_VALUE = re.compile(
    r""""((?:[^"\\\r\n]|\\.)*)|'((?:[^'\\\r\n]|\\.)*)|\\["']([^"'\\\r\n]*)|([^\s"'\\]+)"""
)
# Sensitive names whose value in prose is rather a state or a count than a secret ("token: expired",
# "status code: 200", "pwd: /home/ada"): masked in "name=value" text only, not after ": " or " = ".
_PROSE_WEAK_KEYS = frozenset(
    {"token", "tokens", "code", "sig", "signature", "credential", "credentials", "auth", "pass", "pwd"}
)
_AUTHORIZATION_SCHEME = re.compile(r"[A-Za-z][\w.-]*[ \t]+(?=\S)")
# Runs of percent escapes, decoded together (a UTF-8 character may take several). Written with a literal
# start, which the regex engine searches for fast.
_PERCENT_RUN = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
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
# Not after a digit, nor after a digit and a dot (the decimals of "0.4111111111111111"). 13 to 19 digits,
# grouped with spaces or dashes anywhere, or with dots between groups of 3 to 6 digits, three groups at
# least, not followed by another dotted number ("4111.1111.1111.1111" but not the float "1705312800.123456",
# nor "1.2.3.4").
_CARD_PATTERN = (
    r"(?<!\d)(?<!\d\.)"
    r"(?:\d(?:[ -]?\d){12,18}|(?=(?:\d\.?){13})\d{3,6}(?:\.\d{3,6}){2,4}(?!\.\d))(?!\d)"
)
_CARD_CANDIDATE = re.compile(_CARD_PATTERN)
_CARD_GROUP_SEPARATORS = re.compile(r"[ -]")
_MAX_CARD_GROUP = 6  # the longest group of digits of a card number written with spaces or dashes
_CARD_CANDIDATE_BYTES = re.compile(_CARD_PATTERN.encode())
# Every key of SENSITIVE_KEYS and SENSITIVE_SUFFIXES, in any spelling, contains one of these (lower case);
# every secret-shaped value contains one of the markers (a card number is found by its digits).
_KEY_ROOTS = frozenset(
    {"pass", "pwd", "secret", "token", "key", "authoriz", "cookie", "session", "code", "sig", "credential"}
    | {"sessid", "connect.sid", "connect_sid", "connect-sid", "connect sid", "connectsid"}
    | {"card", "cvv", "cvc", "cvn", "otp", "pin", "private", "ccnum", "cc_num", "cc-num", "cc num", "jwt"}
)
_VALUE_MARKERS = frozenset(
    {"eyj", "private key", "bearer", "basic", "digest", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}
    | {"sk_live_", "rk_live_", "sk_test_", "rk_test_", "xox", *_PASSWORD_HASH_MARKERS}
    | {"sk-", "aiza", "glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "npm_", "pypi-", "hf_", "sg."}
    | {"shpat_", "shpss_", "shpca_", "shppa_", "_v1_", "whsec_", "hooks.slack.com/", "/api/webhooks/"}
)
# The keys "auth", "basic_auth", "auth2" but not "author" (a key with "authKey" has the root "key").
_AUTH_WORD_BYTES = re.compile(rb"auth(?![a-z])")
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
# Maps ASCII text to "1" for a digit and "x" for anything else. With the card separators (space, dash, dot)
# deleted, 13 "1"s in a row is what every card candidate (13+ digits, single separators) leaves behind.
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= code <= 0x39 else 0x78 for code in range(256))
_CARD_SEPARATORS = b" -."
_SHORTEST_CARD_RUN = b"1" * _MIN_CARD_DIGITS
_NORMALISE = str.maketrans("", "", "-_ .")
_BRACKETS = re.compile(r"[\[\]]+")
# Values that hide nothing, whatever their key (as written in JSON text, whitespace removed).
_EMPTY_VALUES = frozenset({'""', "''", 'b""', "b''", "[]", "{}", '\\"\\"'})
# {"name": "DB_PASSWORD", "value": "x"}: the dict of a list of named values (Kubernetes and ECS environments,
# HAR headers, AWS tags), whose value is masked when its name is a sensitive key.
_NAMED_VALUE_KEYS = (("name", "value"), ("key", "value"), ("Name", "Value"), ("Key", "Value"))
# ["Authorization", "Token x"]: a pair in a list of pairs; its name is at most this long.
_MAX_PAIR_NAME_CHARS = 64

# Where a value sits in a record: None for the record itself, else (where its container sits, its key or
# index, True when that is a list index).
_Location = tuple[Any, Any, bool] | None
_KEY_CACHE_LIMIT = 10_000


class _CustomPatterns:
    """``REDACT_PATTERNS``, each compiled alone, so each finds exactly what it finds alone: its inline flags,
    group names and numbered back-references are its own (one expression joined with ``|`` would mix them).

    ``mask(text)`` replaces every match of every pattern with :data:`MASK`; matches of different patterns
    that share characters are masked as one. Most texts match none: that costs one ``search`` per pattern.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = tuple(re.compile(pattern) for pattern in patterns)
        # ``text`` with every match of every pattern masked (``text`` itself when none matched); for one
        # pattern, its own ``sub`` (no Python call per string).
        self.mask: Callable[[str], str] = (
            partial(self._patterns[0].sub, MASK) if len(self._patterns) == 1 else self._mask_each
        )

    def finds(self, text: str) -> bool:
        """True when some pattern matches ``text``."""
        return any(pattern.search(text) is not None for pattern in self._patterns)

    def _mask_each(self, text: str) -> str:
        for pattern in self._patterns:  # the usual case: no match, one search per pattern
            if pattern.search(text) is not None:
                return self._mask_matches(text)
        return text

    def _mask_matches(self, text: str) -> str:
        matching = [pattern for pattern in self._patterns if pattern.search(text) is not None]
        if len(matching) == 1:
            return matching[0].sub(MASK, text)
        spans = sorted(match.span() for pattern in matching for match in pattern.finditer(text))
        return _mask_spans(text, spans)


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each of ``spans`` (sorted ``(start, end)`` pairs) replaced by :data:`MASK`; spans that
    share characters are one. An empty span (the empty match of a pattern) inserts the mask."""
    pieces: list[str] = []
    done = 0  # where the text masked last ends
    last: tuple[int, int] | None = None
    for span in spans:
        start, end = span
        if last is not None and (start < done or span == last):  # overlaps the last mask, or repeats it
            done = max(done, end)
            continue
        pieces += (text[done:start], MASK)
        done, last = end, span
    pieces.append(text[done:])
    return "".join(pieces)


class Redactor:
    """Masks secrets in records; build one per settings, reuse it for every record (it is thread-safe).

    ``extra_keys`` are added to the sensitive keys (same normalisation); ``extra_patterns`` are regular
    expressions whose every match is masked in every string.
    """

    def __init__(self, extra_keys: Iterable[str] = (), extra_patterns: Iterable[str] = ()) -> None:
        extra_keys = tuple(extra_keys)
        self.keys = SENSITIVE_KEYS | {normalise_key(key) for key in extra_keys}
        patterns = tuple(extra_patterns)
        self._custom = _CustomPatterns(patterns) if patterns else None
        self._key_cache: dict[str, bool] = {}
        # Keys of records known to be harmless (most keys of most records): one set lookup per value walked.
        self._harmless_keys: set[Any] = set()
        # Names before a colon, written backwards, and whether they are sensitive header names.
        self._header_names: dict[str, bool] = {}
        extra_roots = {_longest_word(key) for key in extra_keys}
        self._roots = tuple(
            root.encode() for root in sorted(_KEY_ROOTS | _VALUE_MARKERS | extra_roots) if root
        )

    # --- keys ----------------------------------------------------------------------------------------------
    def is_sensitive_key(self, key: str) -> bool:
        """True when the value under ``key`` must be masked (see the module docstring)."""
        cached = self._key_cache.get(key)
        if cached is None:
            cached = any(self._is_sensitive_name(name) for name in _key_names(key))
            if len(self._key_cache) >= _KEY_CACHE_LIMIT:
                self._key_cache.clear()
            self._key_cache[key] = cached
        return cached

    def _is_sensitive_name(self, name: str) -> bool:
        """True when ``name`` (one part of a key, see :func:`_key_names`) is sensitive: once normalised it is
        a sensitive key or ends with a sensitive suffix, maybe before a last word of :data:`_QUALIFIER_WORDS`,
        or its words end with one of :data:`_SECRET_WORD_ENDINGS`."""
        if self._is_sensitive_normal(normalise_key(name)):
            return True
        words = [word.lower() for word in _WORD.findall(name)]
        if len(words) > 1 and words[-1] in _QUALIFIER_WORDS:
            words.pop()
            if self._is_sensitive_normal("".join(words)):
                return True
        return tuple(words[-1:]) in _SECRET_WORD_ENDINGS or tuple(words[-2:]) in _SECRET_WORD_ENDINGS

    def _is_sensitive_normal(self, normal: str) -> bool:
        return normal in self.keys or normal.endswith(SENSITIVE_SUFFIXES)

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
            and ("=" in text or ":" in text or "<" in text or "%" in text or self._custom is not None)
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
        if b"\\u" in lowered:  # so does a key spelt with JSON escapes ("p\\u0061ssword")
            lowered += b"\n" + _decode_json_escapes(lowered.decode("utf-8", "replace")).lower().encode(
                "utf-8", "replace"
            )
        if any(root in lowered for root in self._roots):
            return True
        if b"auth" in lowered and _AUTH_WORD_BYTES.search(lowered) is not None:
            return True
        if b"@" in line and _has_url_secret(line.decode("utf-8", "replace")):
            return True
        if _CARD_CANDIDATE_BYTES.search(line) is not None:
            return True
        if (b"AKIA" in line or b"ASIA" in line) and _AWS_ACCESS_KEY_ID_BYTES.search(line) is not None:
            return True
        return self._custom is not None and self._custom.finds(line.decode("utf-8", "replace"))

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
    # key=value, scheme://user:password@, "key": value, header lines and the XML patterns fit, and each needs
    # a "=", a ":" or a "<", or a "%" to be decoded into one (REDACT_PATTERNS may match anything of 5
    # characters or more). A key is judged once: after that it is in the harmless set, or it is sensitive (a
    # cached look-up).

    def _walk_dict(
        self, value: dict[Any, Any], at: _Location, found: list[str], skip: frozenset[str], depth: int
    ) -> None:
        harmless = self._harmless_keys
        scan_all = self._custom is not None
        renamed: dict[Any, str] | None = None
        if at is not None and ("value" in value or "Value" in value):  # not the record's own "name"
            self._mask_named_value(value, at, found)
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
                    size >= _MIN_SECRET_CHARS
                    and ("=" in item or ":" in item or "<" in item or "%" in item or scan_all)
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

    def _mask_named_value(self, value: dict[Any, Any], at: _Location, found: list[str]) -> None:
        """Mask the value of a ``{"name": ..., "value": ...}`` dict (see :data:`_NAMED_VALUE_KEYS`) whose name
        is a sensitive key, in place."""
        for name_key, value_key in _NAMED_VALUE_KEYS:
            name = value.get(name_key)
            if value_key in value and type(name) is str and self._is_pair_name(name):
                item = value[value_key]
                if _hides_something(item):
                    value[value_key] = masked_value(item)
                    found.append(_path(at, value_key, False))
                return

    def _mask_pair_in_list(self, pair: list[Any], at: _Location, found: list[str]) -> None:
        """Mask the second item of ``pair``, an item of a list, when the first is a sensitive key
        (``[["Authorization", "Token x"]]``, ``requests``' ``params=[("password", "x")]``), in place."""
        name, item = pair
        if type(name) is str and self._is_pair_name(name) and _hides_something(item):
            pair[1] = masked_value(item)
            found.append(_path(at, 1, True))

    def _is_pair_name(self, name: str) -> bool:
        return len(name) <= _MAX_PAIR_NAME_CHARS and self.is_sensitive_key(name)

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
                    size >= _MIN_SECRET_CHARS
                    and ("=" in item or ":" in item or "<" in item or "%" in item or scan_all)
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
                    if len(item) == 2:
                        self._mask_pair_in_list(item, (at, index, True), found)
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
        clean = self._scrub(text)
        if "%" in clean:
            clean = _scrub_percent_encoded(clean, self._scrub)
        return None if clean == text else clean

    def _scrub(self, text: str) -> str:
        """``text`` with every secret-shaped part masked (the work of :meth:`scrub_text` but decoding)."""
        long_enough = len(text) >= _MIN_SHAPED_SECRET_CHARS
        if long_enough:
            if "PRIVATE KEY" in text:
                text = _PEM_PRIVATE_KEY.sub(MASK, text)
            if "eyJ" in text:
                text = _JWT.sub(MASK, text)
            if _may_hold_vendor_token(text):
                text = _VENDOR_TOKEN.sub(_mask_vendor_token, text)
            if len(text) >= _SHORTEST_LONG_TOKEN:
                text = _mask_long_vendor_tokens(text)
            if "AKIA" in text or "ASIA" in text:
                text = _AWS_ACCESS_KEY_ID.sub(_mask_vendor_token, text)
            if "$" in text and any(marker in text for marker in _PASSWORD_HASH_MARKERS):
                text = _PASSWORD_HASH.sub(_mask_vendor_token, text)
        if (long_enough or "=" in text) and _may_name_auth_scheme(text):  # "Digest nc=x" is 11 characters
            text = _DIGEST_PARAMS.sub(rf"\1\2{MASK}", text)
            if long_enough:
                text = _AUTH_SCHEME.sub(rf"\1\2{MASK}", text)
                text = _SHORT_CREDENTIAL.sub(_mask_short_credential, text)
        if "@" in text and _may_hold_url(text):
            text = _URL_PASSWORD.sub(_mask_url_password, text)
            text = _mask_other_url_passwords(text)
            text = _URL_TOKEN_USER.sub(_mask_token_user, text)
        if ":" in text and self._may_hide_header_line(text):
            text = self._mask_header_lines(text)
        if "=" in text:
            text = _mask_key_value_pairs(text, self.is_sensitive_key, self._is_prose_secret_name)
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
            text = self._custom.mask(text)
        return text

    def _may_hide_header_line(self, text: str) -> bool:
        """False when no name before a colon in ``text`` is a sensitive header name or a sensitive name in
        prose (read backwards, in C)."""
        known = self._header_names
        for reversed_name in _REVERSED_HEADER_NAME.findall(text[::-1]):
            verdict = known.get(reversed_name)
            if verdict is None:
                if len(known) >= _KEY_CACHE_LIMIT:
                    known.clear()
                name = reversed_name[::-1]
                verdict = self._is_sensitive_header(name) or self._is_prose_secret_name(name)
                known[reversed_name] = verdict
            if verdict:
                return True
        return False

    def _is_sensitive_header(self, name: str) -> bool:
        return ("-" in name or normalise_key(name) in _SINGLE_WORD_HEADERS) and self.is_sensitive_key(name)

    def _is_prose_secret_name(self, name: str) -> bool:
        """True when the value after ``name`` and ``": "`` or ``" = "`` in prose is masked: a sensitive key,
        but not one of :data:`_PROSE_WEAK_KEYS`."""
        return normalise_key(name) not in _PROSE_WEAK_KEYS and self.is_sensitive_key(name)

    def _mask_header_lines(self, text: str) -> str:
        """``text`` with the value of every sensitive header line masked (see :data:`_HEADER_LINE_START`); an
        ``Authorization`` value keeps its scheme word (``Authorization: Token [REDACTED]``). After any other
        sensitive name, a colon and a space, one word or quoted string is masked (``password: [REDACTED]``).
        """
        pieces: list[str] = []
        done = position = 0
        while (match := _HEADER_LINE_START.search(text, position)) is not None:
            position = match.end()
            name = match.group(1)
            if not self._is_sensitive_header(name):
                if self._is_prose_secret_name(name) and not _is_host_and_port(text, match):
                    span = _prose_value_span(text, position)
                    if span is not None:
                        pieces += (text[done : span[0]], MASK)
                        done = position = span[1]
                continue
            end = _HEADER_VALUE_END.search(text, position)
            value_end = len(text) if end is None else end.start()
            shown = ""
            if normalise_key(name) in _AUTHORIZATION_HEADERS:
                scheme = _AUTHORIZATION_SCHEME.match(text, position, value_end)
                if scheme is not None:
                    shown, position = scheme.group(), scheme.end()
            if text[position:value_end].strip() not in ("", MASK):
                pieces += (text[done : match.end()], shown, MASK)
                done = value_end
            position = value_end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

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
    """The names ``key`` is judged by: ``key`` itself, percent and JSON ``\\u`` escapes decoded; for a
    nested-form key (``user[password]``, ``items[0][api_key]``) also each bracketed part but indexes, and the
    whole without brackets."""
    if "%" in key:
        key = unquote(key)
    key = _decode_json_escapes(key)
    if "[" not in key and "]" not in key:
        return [key]
    parts = [part for part in _BRACKETS.split(key) if part and not part.isdigit()]
    return [*parts, _BRACKETS.sub("", key)]


def _is_host_and_port(text: str, name: re.Match[str]) -> bool:
    """True when a name and a colon (:data:`_HEADER_LINE_START`) with no space after it are rather a host and
    a port than a name and its value: 1 to 5 digits follow the colon, then no other word character, and the
    name has a dot (``db.secret:5432``) or follows ``/`` or ``@`` (``redis://secret:6379/0``)."""
    if name.group(2) != ":" or _PORT.match(text, name.end()) is None:
        return False
    start = name.start()
    return "." in name.group(1) or (start > 0 and text[start - 1] in "/@")


def _prose_value_span(text: str, start: int) -> tuple[int, int] | None:
    """Where the value of a name in prose that starts at ``start`` lies (inside its quotes when quoted), or
    None when there is none or it is masked already (see :data:`_PROSE_VALUE`)."""
    value = _PROSE_VALUE.match(text, start)
    if value is None:
        return None
    group = value.lastindex or 0
    if value.group(group) in ("", MASK):
        return None
    return value.span(group)


def _mask_key_value_pairs(
    text: str, is_sensitive: Callable[[str], bool], is_sensitive_spaced: Callable[[str], bool] | None = None
) -> str:
    """``text`` with the value of every ``key=value`` pair whose key ``is_sensitive`` masked, a pair at its
    very start included; a ``key = value`` pair (spaces around ``=``, as in prose) when its key
    ``is_sensitive_spaced`` (default: ``is_sensitive``). A value that is kept is searched too:
    ``?next=/cb?token=x`` holds ``token=x``."""
    text = " " + text
    pieces: list[str] = []
    done = position = 0
    while (match := _KEY_EQUALS.search(text, position)) is not None:
        position = match.end()
        key, equals = match.groups()
        judge = is_sensitive if equals == "=" or is_sensitive_spaced is None else is_sensitive_spaced
        if not judge(key):
            continue
        end = _VALUE_END.search(text, position)
        value_end = len(text) if end is None else end.start()
        if value_end > position and text[position:value_end] != MASK:
            pieces += (text[done:position], MASK)
            done = value_end
        position = value_end
    if not pieces:
        return text[1:]
    pieces.append(text[done:])
    return "".join(pieces)[1:]


def _mask_quoted_pairs(text: str, is_sensitive: Callable[[str], bool]) -> str:
    """``text`` with the value of every ``"key": value`` pair whose key ``is_sensitive`` masked, also where
    the quotes are escaped (JSON text held in a string of JSON text: ``"raw": "{\\"password\\": \\"x\\"}"``).

    A list or object value is masked whole, up to its closing bracket, or to the end of ``text`` when it was
    cut (``{"token": {"a": "b"`` -> ``{"token": "[REDACTED]"``).
    """
    text = _mask_pairs_of(text, is_sensitive, _QUOTED_KEY_VALUE, _BRACKET_TOKENS)
    if '\\"' in text:
        text = _mask_pairs_of(text, is_sensitive, _ESCAPED_KEY_VALUE, _ESCAPED_BRACKET_TOKENS)
    return text


def _mask_pairs_of(
    text: str, is_sensitive: Callable[[str], bool], pairs: re.Pattern[str], tokens: re.Pattern[str]
) -> str:
    """:func:`_mask_quoted_pairs` for one quoting: ``pairs`` finds them (groups: quote, key, colon, value),
    ``tokens`` steps over a list or object value (see :func:`_closing_bracket`)."""
    pieces: list[str] = []
    done = position = 0
    while (match := pairs.search(text, position)) is not None:
        quote, key, colon, value = match.groups()
        if not is_sensitive(_decode_json_escapes(key)):
            position = match.end()  # inside a list or object, pairs are still looked at
            continue
        end = match.end()
        if value == "[" or value == "{":  # looked for only here: a masked value is skipped whole, so linear
            end = _closing_bracket(text, match.start(4), tokens)
            value = "".join(text[match.start(4) : end].split())
        if value in _EMPTY_VALUES:
            position = match.end()
            continue
        value_quote = '"' if len(quote) == 1 else quote  # a Python repr's 'key' gets a JSON string too
        pieces += (text[done : match.start()], f"{quote}{key}{quote}{colon}{value_quote}{MASK}{value_quote}")
        done = position = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _decode_json_escapes(key: str) -> str:
    """``key`` with its JSON ``\\uXXXX`` escapes (see :data:`_JSON_ESCAPE`) decoded: ``pass\\u0077ord`` ->
    ``password``."""
    if "u" not in key or "\\" not in key:
        return key
    return _JSON_ESCAPE.sub(lambda escape: chr(int(escape.group(1), 16)), key)


def _closing_bracket(text: str, start: int, tokens: re.Pattern[str] = _BRACKET_TOKENS) -> int:
    """The index just past the bracket closing the one at ``text[start]``, or ``len(text)`` when it is cut.

    Brackets inside quoted strings do not count. With :data:`_ESCAPED_BRACKET_TOKENS`, a bare quote ends
    the escaped JSON (the string holding it closes): the index of that quote.
    """
    depth = 0
    for token in tokens.finditer(text, start):
        bracket = token.group()
        if bracket == '"':
            return token.start()
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
        clean = _mask_key_value_pairs(clean, is_wanted)
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


def _scrub_percent_encoded(text: str, scrub: Callable[[str], str]) -> str:
    """``text`` with what ``scrub`` masks in its percent-decoded form masked in place, the rest kept encoded.

    ``https%3A%2F%2Fapp%2Fcb%3Ftoken%3Dx`` -> ``https%3A%2F%2Fapp%2Fcb%3Ftoken%3D[REDACTED]``. What changed in
    the decoded text is one stretch, from its first change to its last (secrets between two others go with
    them); it replaces the encoded characters it came from, widened to whole runs of escapes.
    """
    decoded = _PERCENT_RUN.sub(_decode_percent_run, text)
    if decoded == text:  # no escape
        return text
    masked = scrub(decoded)
    if masked == decoded:
        return text
    pieces: list[tuple[int, int, str]] = []  # (start in text, end in text, decoded), in order
    position = 0
    for run in _PERCENT_RUN.finditer(text):
        if run.start() > position:
            pieces.append((position, run.start(), text[position : run.start()]))
        pieces.append((run.start(), run.end(), _decode_percent_run(run)))
        position = run.end()
    if position < len(text):
        pieces.append((position, len(text), text[position:]))
    head = _common_prefix_length(decoded, masked)
    tail = _common_prefix_length(decoded[head:][::-1], masked[head:][::-1])
    start = _encoded_offset(pieces, head, towards_start=True)
    end = _encoded_offset(pieces, len(decoded) - tail, towards_start=False)
    return text[:start] + masked[head : len(masked) - tail] + text[end:]


def _decode_percent_run(run: re.Match[str]) -> str:
    return bytes.fromhex(run.group().replace("%", "")).decode("utf-8", "replace")


def _common_prefix_length(first: str, second: str) -> int:
    length = min(len(first), len(second))
    if first[:length] == second[:length]:
        return length
    low, high = 0, length  # the answer is in [low, high): halve it, comparing slices in C
    while high - low > 1:
        middle = (low + high) // 2
        if first[:middle] == second[:middle]:
            low = middle
        else:
            high = middle
    return low


def _encoded_offset(pieces: list[tuple[int, int, str]], offset: int, towards_start: bool) -> int:
    """Where decoded ``offset`` falls in the encoded text that ``pieces`` decoded (see
    :func:`_scrub_percent_encoded`); inside a run of escapes, its start or end."""
    decoded_start = 0
    for start, end, decoded in pieces:
        decoded_end = decoded_start + len(decoded)
        if offset == decoded_start:
            return start
        if offset < decoded_end:
            if end - start == len(decoded):  # plain text: one character each
                return start + offset - decoded_start
            return start if towards_start else end
        decoded_start = decoded_end
    return pieces[-1][1]


def _mask_vendor_token(match: re.Match[str]) -> str:
    """A vendor token (:data:`_VENDOR_TOKEN`), AWS access key id (:data:`_AWS_ACCESS_KEY_ID`) or password
    hash (:data:`_PASSWORD_HASH`) masked, its prefix kept: ``ghp_[REDACTED]``, ``AKIA[REDACTED]``,
    ``pbkdf2_sha256$[REDACTED]``."""
    return f"{match.group(match.lastindex or 0)}{MASK}"


def _may_hold_vendor_token(text: str) -> bool:
    """False when :data:`_VENDOR_TOKEN` cannot match (a few substring searches in C)."""
    return "xox" in text or (
        "_" in text
        and (
            "k_live_" in text
            or "k_test_" in text
            or "github_pat_" in text
            or _GITHUB_TOKEN_PREFIX.search(text) is not None
        )
    )


def _mask_long_vendor_tokens(text: str) -> str:
    """``text`` with the tokens of :data:`_LONG_VENDOR_TOKENS` masked: each pattern runs only when its
    marker is in the text, and the markers are looked for only when the text holds the character (``-``,
    ``_``, ``.``) their tokens hold, so most text costs a handful of substring searches in C."""
    mask = _mask_vendor_token
    if "AIza" in text:
        text = _GOOGLE_API_KEY.sub(mask, text)
    if "-" in text:
        if "sk-" in text:
            text = _OPENAI_TOKEN.sub(mask, text)
        if "gl" in text:
            for gitlab_token in _GITLAB_TOKENS:
                text = gitlab_token.sub(mask, text)
        if "pypi-" in text:
            text = _PYPI_TOKEN.sub(mask, text)
    if "_" in text:
        if "npm_" in text:
            text = _NPM_TOKEN.sub(mask, text)
        if "hf_" in text:
            text = _HUGGING_FACE_TOKEN.sub(mask, text)
        if "shp" in text:
            text = _SHOPIFY_TOKEN.sub(mask, text)
        if "_v1_" in text:
            text = _DIGITALOCEAN_TOKEN.sub(mask, text)
        if "whsec_" in text:
            text = _STRIPE_WEBHOOK_SECRET.sub(mask, text)
    if "." in text:
        if "SG." in text:
            text = _SENDGRID_KEY.sub(mask, text)
        if "hooks.slack.com/" in text:
            text = _SLACK_WEBHOOK.sub(mask, text)
        if "/api/webhooks/" in text:
            text = _DISCORD_WEBHOOK.sub(mask, text)
    return text


def _looks_like_token(text: str) -> bool:
    """True for a user name that is rather a token: letters and digits both (``ghp_1a2b...``, a hex key)."""
    return any(char.isdigit() for char in text) and any(char.isalpha() for char in text)


def _is_url_password(password: str) -> bool:
    """False for what :data:`_URL_PASSWORD` found that ends a quoted string inside (no password then)."""
    return ('"' not in password and "'" not in password) or _QUOTE_THAT_ENDS.search(password) is None


def _may_hold_url(text: str) -> bool:
    """False when ``text`` has no ``://`` (see :data:`_SCHEME_SLASHES`), escaped or not."""
    return "://" in text or ":\\" in text


def _mask_url_password(match: re.Match[str]) -> str:
    """The :data:`_URL_PASSWORD` callback: ``://user:[REDACTED]@``."""
    start, password, at = match.groups()
    return f"{start}{MASK}{at}" if _is_url_password(password) else match.group(0)


def _mask_other_url_passwords(text: str) -> str:
    """``text`` with the URL passwords :data:`_URL_PASSWORD` leaves masked: longer than 256 characters, or
    holding an escaped ``\\/``. A password runs from ``://user:`` to the last ``@`` of its stretch, the text
    up to a space, quote, ``<``, ``>`` or backslash (not that of ``\\/``), so a host always follows that
    ``@``; a password masked already is widened to it too (an ``@`` in a path further than 256 characters).
    Linear: a stretch, and its last ``@``, are looked for once, however many URLs start in it.
    """
    pieces: list[str] = []
    done = stretch_end = last_at = 0
    for start in _URL_PASSWORD_STARTS.finditer(text):
        begin = start.end()
        if begin < done:  # inside a password masked here
            continue
        if begin >= stretch_end:
            end = _URL_STRETCH_END.search(text, begin)
            stretch_end = len(text) if end is None else end.start()
            last_at = text.rfind("@", begin, stretch_end)
        if last_at > begin and text[begin:last_at] != MASK:
            pieces += (text[done:begin], MASK)
            done = last_at
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _mask_token_user(match: re.Match[str]) -> str:
    """The :data:`_URL_TOKEN_USER` callback: ``://[REDACTED]@`` when the user name looks like a token."""
    scheme, user, rest = match.groups()
    return f"{scheme}{MASK}{rest}" if _looks_like_token(user) else match.group(0)


def _has_url_secret(text: str) -> bool:
    """True when the URL patterns would mask something in ``text``."""
    if any(_is_url_password(match.group(2)) for match in _URL_PASSWORD.finditer(text)):
        return True
    return any(_looks_like_token(match.group(2)) for match in _URL_TOKEN_USER.finditer(text))


def _mask_short_credential(match: re.Match[str]) -> str:
    """The :data:`_SHORT_CREDENTIAL` callback: ``Bearer [REDACTED]`` for a token of letters only (not a word
    of :data:`_BEARER_PROSE_WORDS`), and for any scheme word one that mixes cases like Base64 text."""
    scheme, space, credential = match.groups()
    if _MIXED_CASE.search(credential) is not None or (
        scheme.lower() == "bearer" and credential.lower() not in _BEARER_PROSE_WORDS
    ):
        return f"{scheme}{space}{MASK}"
    return match.group(0)


def _may_name_auth_scheme(text: str) -> bool:
    """False when :data:`_AUTH_SCHEME` cannot match: no ``bearer``, ``basic`` or ``digest`` in any case."""
    lowered = text.lower()
    return "bearer" in lowered or "basic" in lowered or "digest" in lowered


def _may_hold_card_number(text: str) -> bool:
    """False when :data:`_CARD_CANDIDATE` cannot match: no run of 13 digits, only spaces, dashes or dots
    between.

    Done in C on the ASCII bytes (a UUID or a timestamp has plenty of digits, but letters or colons between
    them); ``\\d`` also matches the digits of other scripts, so any other text is left to the regular
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
    """The masked card number if ``candidate`` (digits, spaces, dashes, dots) is one, else None."""
    digits = candidate.replace(" ", "").replace("-", "").replace(".", "")
    if not 13 <= len(digits) <= 19 or not digits.isdigit():
        return None
    if not has_card_prefix(digits) or not luhn_valid(digits):
        return None
    shown_head = 6 if len(digits) >= 15 else 0
    hidden = len(digits) - shown_head - 4
    return f"{digits[:shown_head]}{'*' * hidden}{digits[-4:]}"


def _mask_card_match(match: re.Match[str]) -> str:
    candidate = match.group(0)
    if _part_of_an_id(match) or _grouped_unlike_a_card(candidate):
        return candidate
    masked = mask_card_number(candidate)
    return candidate if masked is None else masked


def _part_of_an_id(match: re.Match[str]) -> bool:
    """True when the digits touch a letter (``a399e5292602475284526dc4``: a hex id, a hash, a token): a card
    number is written apart from letters, and an id masked by mistake no longer joins its records."""
    text, start, end = match.string, match.start(), match.end()
    return (start > 0 and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha())


def _grouped_unlike_a_card(candidate: str) -> bool:
    """True when spaces or dashes split the digits into a group longer than a card's (4-4-4-4, 4-6-5 ...):
    the 8-4-4 of a UUID whose first groups happen to be digits only."""
    if " " not in candidate and "-" not in candidate:
        return False
    return any(len(group) > _MAX_CARD_GROUP for group in _CARD_GROUP_SEPARATORS.split(candidate))
