"""Who made a change: read at the moment of the change, never cached across requests.

Order: an actor set with :class:`~activity_audit.context.audit_context` wins; else the user of the current
request (read from ``request.user`` when the change happens, so users authenticated inside the view, as
token/JWT authentication does, are seen); else ``anonymous`` inside a request; else ``system:<source>``
(the management command, the task, or the program).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from .conf import get_settings
from .context import current, process_source
from .encoding import snapshot

ANONYMOUS = "anonymous"


class Actor(NamedTuple):
    """``name`` is ``user:<pk>``, ``anonymous`` or ``system:<source>`` (or what ``audit_context`` gave);
    ``user`` is the small representation of a user (``USER_FIELDS``), or None."""

    name: str
    user: dict[str, Any] | None


def describe_user(user: Any) -> dict[str, Any]:
    """The configured fields of ``user`` (default: ``id`` and ``username``) as plain values."""
    out: dict[str, Any] = {}
    for field_name in get_settings().USER_FIELDS:
        if field_name == "id":
            value = user.pk
        elif field_name == "username":
            value = user.get_username() if hasattr(user, "get_username") else getattr(user, "username", None)
        else:
            value = getattr(user, field_name, None)
        out[field_name] = snapshot(value)
    return out


@contextmanager
def _session_left_as_it_was(request: Any) -> Iterator[None]:
    """Read the user without marking the session as accessed.

    Django adds ``Vary: Cookie`` to every response whose session was accessed. A view that never looked at
    the user returns a response that does not depend on the cookie; the audit reading the user for its
    record must not make it uncacheable.
    """
    session = getattr(request, "session", None)
    accessed = getattr(session, "accessed", None)
    try:
        yield
    finally:
        if accessed is False:
            session.accessed = False  # type: ignore[union-attr]


def _is_user(value: Any) -> bool:
    return bool(getattr(value, "is_authenticated", False)) and getattr(value, "pk", None) is not None


def actor_from_user(user: Any) -> Actor:
    return Actor(f"user:{user.pk}", describe_user(user))


def resolve_actor() -> Actor:
    """The actor of the current thread or task, right now."""
    context = current()
    explicit = context.actor
    if explicit is not None:
        if _is_user(explicit):
            return actor_from_user(explicit)
        return Actor(str(explicit), None)
    request = context.request
    if request is not None:
        user = getattr(request, "user", None)
        with _session_left_as_it_was(request):
            is_user = _is_user(user)  # may load the user from the session, lazily
        if is_user:
            return actor_from_user(user)
        return Actor(ANONYMOUS, None)
    return Actor(f"system:{context.source or process_source()}", None)
