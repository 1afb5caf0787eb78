"""Who made a change: read at the moment of the change, never cached across requests.

Order: an actor set with :class:`~activity_audit.context.audit_context` wins; else the user of the current
request (read from ``request.user`` when the change happens, so users authenticated inside the view, as
token/JWT authentication does, are seen); else ``anonymous`` inside a request; else ``system:<source>``
(the management command, the task, or the program).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.contrib.auth import SESSION_KEY
from django.utils.functional import SimpleLazyObject, empty

from .conf import get_settings
from .context import AuditContext, current, process_source
from .encoding import snapshot

ANONYMOUS = "anonymous"

# Where Django's AuthenticationMiddleware builds the lazy ``request.user`` (a lambda in process_request).
_AUTH_MIDDLEWARE_MODULE = "django.contrib.auth.middleware"
_AUTH_MIDDLEWARE_SETUP = "AuthenticationMiddleware.process_request."


class Actor(NamedTuple):
    """``name`` is ``user:<pk>``, ``anonymous`` or ``system:<source>`` (or what ``audit_context`` gave);
    ``user`` is the small representation of a user (``USER_FIELDS``), or None."""

    name: str
    user: dict[str, Any] | None


ANONYMOUS_ACTOR = Actor(ANONYMOUS, None)


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


def _authenticated_user(request: Any) -> Any:
    """``request.user`` if it is an authenticated user, else None; read without marking the session accessed.

    Django adds ``Vary: Cookie`` to every response whose session was accessed. A view that never looked at
    the user returns a response that does not depend on the cookie; the audit reading the user for its
    record must not make it uncacheable.

    When ``AuthenticationMiddleware``'s lazy user was never evaluated and the session holds no user id,
    Django would build an ``AnonymousUser``: None says so without building it.
    """
    session = getattr(request, "session", None)
    accessed = getattr(session, "accessed", None)
    try:
        lazy = request.__dict__.get("user")
        if _is_unevaluated_django_user(lazy) and _holds_no_user(session):
            return None
        user = getattr(request, "user", None)
        return user if _is_user(user) else None  # may load the user from the session, lazily
    finally:
        if accessed is False:
            session.accessed = False  # type: ignore[union-attr]


def _is_unevaluated_django_user(value: Any) -> bool:
    """True for the ``SimpleLazyObject`` that ``AuthenticationMiddleware`` puts on a request, unevaluated."""
    global _django_setup_code
    if type(value) is not SimpleLazyObject or value.__dict__.get("_wrapped") is not empty:
        return False
    setup = value.__dict__.get("_setupfunc")
    code = getattr(setup, "__code__", None)
    if code is not None and code is _django_setup_code:
        return True
    if getattr(setup, "__module__", None) == _AUTH_MIDDLEWARE_MODULE and getattr(
        setup, "__qualname__", ""
    ).startswith(_AUTH_MIDDLEWARE_SETUP):
        _django_setup_code = code  # every request's lazy user shares it: later checks are one comparison
        return True
    return False


# The code of AuthenticationMiddleware's lazy-user function, once seen.
_django_setup_code: Any = None


def _holds_no_user(session: Any) -> bool:
    """True when ``session`` holds no logged-in user's id; loads nothing it does not have to.

    A session without a key (no cookie came) and never read or written is empty; any other is asked.
    """
    if getattr(session, "session_key", True) is None and "_session_cache" not in vars(session):
        return True
    return SESSION_KEY not in session


def _is_user(value: Any) -> bool:
    return bool(getattr(value, "is_authenticated", False)) and getattr(value, "pk", None) is not None


def actor_from_user(user: Any) -> Actor:
    return Actor(f"user:{user.pk}", describe_user(user))


def resolve_actor(context: AuditContext | None = None) -> Actor:
    """The actor of the current thread or task (or of ``context``, read from it by the caller), right now."""
    if context is None:
        context = current()
    explicit = context.actor
    if explicit is not None:
        if _is_user(explicit):
            return actor_from_user(explicit)
        return Actor(str(explicit), None)
    request = context.request
    if request is not None:
        user = _authenticated_user(request)
        if user is not None:
            return actor_from_user(user)
        return ANONYMOUS_ACTOR
    return _system_actor(context.source or process_source())


def _system_actor(source: str) -> Actor:
    actor = _system_actors.get(source)
    if actor is None:
        if len(_system_actors) >= 256:  # sources named per task run
            _system_actors.clear()
        actor = _system_actors[source] = Actor(f"system:{source}", None)
    return actor


# The actor of work outside any request, by source: the same few for every record of a process.
_system_actors: dict[str, Actor] = {}
