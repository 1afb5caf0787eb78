"""Built-in ``redact``: masks secrets in every record (requests, CRUD, container logs) on the worker thread.

What is masked and how to extend it: :mod:`activity_audit.redaction` and ``docs/redaction.md``. Settings:
``REDACT_KEYS`` (more sensitive keys) and ``REDACT_PATTERNS`` (regular expressions masked in every string).
Django's ``@sensitive_post_parameters`` is honoured: the request middleware copies the names the view
declared into ``record["sensitive_post_parameters"]`` and their values in the request body are masked here,
also in a body kept as text because it was cut or malformed (``"__ALL__"`` masks every value of the body).
"""

from __future__ import annotations

from typing import Any

from ..conf import AuditSettings
from ..deferred import realise_pending
from ..markers import hookimpl
from ..redaction import MASK, Redactor

# Fields the package writes itself, from its own names or the schema (envelope, model labels, database
# alias, the URL pattern of the URLconf), never holding user data. Not ``request_id``: it may come from a
# request header. Not ``service_name``, ``request_type`` and ``protocol``: a project logging its own calls
# through the ``API`` level writes them, and they are short (most are never handed to a pattern). ``route`` is
# the pattern, not the path: ``reset/<uidb64>/<token>/`` is no XML element, and what ``<token>`` captured is
# masked in the path (see ``activity_audit.deferred.RouteWithSecrets``).
_NOT_SCANNED = frozenset(
    {
        "timestamp",
        "level",
        "name",
        "event_type",
        "model",
        "model_label",
        "db",
        "event_id",
        "stream_id",
        "seq",
        "execution_time",
        "redacted",
        "sensitive_post_parameters",
        "route",
    }
)
ALL_PARAMETERS = "__ALL__"

_redactor = Redactor()


@hookimpl
def audit_configure(settings: AuditSettings) -> None:
    global _redactor
    _redactor = Redactor(settings.REDACT_KEYS, settings.REDACT_PATTERNS)


@hookimpl
def redact(record: dict[str, Any]) -> None:
    realise_pending(record)  # normally done already by activity_audit.plugins.deferred_values
    found = _redactor.redact(record, skip=_NOT_SCANNED)
    declared = record.get("sensitive_post_parameters")
    if declared:
        found.extend(_mask_declared(record, declared))
    if found:
        previous = record.get("redacted")
        record["redacted"] = [*previous, *found] if isinstance(previous, list) else found


def _mask_declared(record: dict[str, Any], declared: Any) -> list[str]:
    """Mask the request-body values a view declared with ``@sensitive_post_parameters``.

    Parsed fields are masked by key; in body text (a cut or malformed body: ``{"truncated": true, "text":
    ...}``, or a text body) the ``name=value`` and ``"name": value`` pairs of the declared names are.
    """
    request = record.get("request_repr")
    if not isinstance(request, dict):
        return []
    body = request.get("body")
    path = "request_repr.body"
    if isinstance(body, dict) and isinstance(body.get("fields"), dict) and "files" in body:
        body, path = body["fields"], "request_repr.body.fields"
    if declared == ALL_PARAMETERS:
        return _mask_everything(request, body, path)
    if not isinstance(declared, list):
        return []
    names = [name for name in declared if isinstance(name, str)]
    if isinstance(body, str):
        masked = _redactor.mask_keys_in_text(body, names)
        if masked is None:
            return []
        request["body"] = masked
        return [path]
    return _redactor.mask_keys(body, names, path)


def _mask_everything(request: dict[str, Any], body: Any, path: str) -> list[str]:
    if isinstance(body, dict) and not {"truncated", "malformed_json", "invalid_utf8", "unread"} & set(body):
        masked = [key for key, value in body.items() if value not in (None, "", MASK)]
        for key in masked:
            body[key] = MASK
        return [f"{path}.{key}" for key in masked]
    if body in (None, "", MASK):
        return []
    if path.endswith(".fields"):
        request["body"]["fields"] = MASK
    else:
        request["body"] = MASK
    return [path]
