"""Who made a change: read at the moment of the change, never cached across requests.

Order: an actor set with :class:`~activity_audit.context.audit_context` wins; else the user of the current
request (read from ``request.user`` when the change happens, so users authenticated inside the view, as
token/JWT authentication does, are seen); else ``anonymous`` inside a request; else ``system:<source>``
(the management command, the task, or the program). The request middleware records ``unknown`` (with the
error's class) when reading the user fails, see :func:`unknown_actor`.

A user the view never looked at is read by the audit after the view, when ``SessionMiddleware`` may already
have sent the response: that read goes through :mod:`activity_audit.session_user`, which decides as Django
does but never writes, cycles or flushes the session.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth import SESSION_KEY
from django.utils.functional import SimpleLazyObject, empty

from .conf import get_settings
from .context import AuditContext, current, process_source
from .encoding import snapshot
from .session_user import asession_user, session_user

ANONYMOUS = "anonymous"
UNKNOWN = "unknown"

# Where Django's AuthenticationMiddleware builds the lazy ``request.user`` (a lambda in process_request).
_AUTH_MIDDLEWARE_MODULE = "django.contrib.auth.middleware"
_AUTH_MIDDLEWARE_SETUP = "AuthenticationMiddleware.process_request."


class Actor(NamedTuple):
    """``name`` is ``user:<pk>``, ``anonymous`` or ``system:<source>`` (or what ``audit_context`` gave);
    ``user`` is the small representation of a user (``USER_FIELDS``), or None. ``error`` is set only on the
    actor made by :func:`unknown_actor`: the class of the exception that kept the actor from being known."""

    name: str
    user: dict[str, Any] | None
    error: str | None = None


ANONYMOUS_ACTOR = Actor(ANONYMOUS, None)


def unknown_actor(exc: BaseException) -> Actor:
    """The actor of a request whose user could not be read (``exc``, e.g. the database is down)."""
    return Actor(UNKNOWN, None, type(exc).__name__)


_NO_USER = object()  # a request that has no ``user`` attribute at all


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


def _authenticated_user(request: Any, after_view: bool = False) -> Any:
    """``request.user`` if it is an authenticated user, else None; the session's ``accessed`` as it was found.

    Django adds ``Vary: Cookie`` to every response whose session was accessed. Reading the user for a record
    must change no header of the response: a view that never looks at the user returns a response that does
    not depend on the cookie, and a view that looks at it after the audit did must still mark the session
    accessed, as its own read would have. So a lazy user is not evaluated in place: its setup is run here and
    replaced by a :class:`_SeenUser`, which the view's first read goes through.

    When ``AuthenticationMiddleware``'s lazy user was never evaluated and the session holds no user id,
    Django would build an ``AnonymousUser``: None says so without building it. ``after_view``: the view has
    returned, so that lazy user is read without side effects on the session
    (:func:`~activity_audit.session_user.session_user`) and left unevaluated for whoever reads it next. A
    user the view loaded with ``await request.auser()`` is taken from Django's cache of it, at no cost.
    """
    session = getattr(request, "session", None)
    accessed = getattr(session, "accessed", None)
    try:
        user = _user_of(request, session, after_view)
        return user if _is_user(user) else None  # may evaluate a lazy user of another kind
    finally:
        if accessed is False:
            session.accessed = False  # type: ignore[union-attr]


def _user_of(request: Any, session: Any, after_view: bool) -> Any:
    setup = _pending_setup(request)
    if setup is None:
        user = getattr(request, "user", _NO_USER)  # evaluated, or set by a middleware or the view
        return _user_before_authentication(request, session) if user is _NO_USER else user
    if type(setup) is _SeenUser:
        return setup.user
    if _is_django_setup(setup):
        loaded = _user_loaded_async(request)
        if loaded is not _NO_USER:
            return loaded
        if _holds_no_user(session):
            return None
        if after_view:
            return session_user(request)
    return _seen(request, setup(), session)  # may load the user from the session


def _user_before_authentication(request: Any, session: Any) -> Any:
    """The user of a request that never reached ``AuthenticationMiddleware`` (a middleware before it failed
    or answered: a refused host, a redirect), decided as that middleware would, without changing the session;
    None without a session."""
    if session is None or not apps.is_installed("django.contrib.auth") or _holds_no_user(session):
        return None
    return session_user(request)


async def authenticated_user_async(request: Any) -> Any:
    """:func:`_authenticated_user` after the view, on the event loop: never a synchronous database query.

    ``AuthenticationMiddleware``'s lazy user, not evaluated yet, is read as Django's ``aget_user`` reads it
    but without side effects on the session (:func:`~activity_audit.session_user.asession_user`), and left
    unevaluated; any other lazy user not evaluated yet on a thread, as Django would. A user the view loaded
    with ``await request.auser()`` is taken as it is.
    """
    setup = _pending_setup(request)
    if setup is None and not hasattr(request, "user"):
        return await sync_to_async(_authenticated_user)(request)  # may read the session and the user
    if setup is None or type(setup) is _SeenUser:
        return _authenticated_user(request)  # at hand: no I/O
    if not _is_django_setup(setup):
        return await sync_to_async(_authenticated_user)(request)
    loaded = _user_loaded_async(request)
    if loaded is not _NO_USER:
        return loaded if _is_user(loaded) else None
    session = request.session
    accessed = session.accessed
    try:
        if _session_at_hand(session) and _holds_no_user(session):
            user = None
        else:
            user = await asession_user(request)
        return user if _is_user(user) else None
    finally:
        if accessed is False:
            session.accessed = False


def _user_loaded_async(request: Any) -> Any:
    """The user the view loaded with ``await request.auser()`` (Django 5.0+), which caches it on the request
    apart from the lazy ``request.user``; ``_NO_USER`` when it did not. Reading it costs no query."""
    return request.__dict__.get("_acached_user", _NO_USER)


class _SeenUser:
    """The setup of a lazy ``request.user`` that the audit already read: the view's first read gets the same
    user, and marks the session accessed when reading the user did (so Django still adds ``Vary: Cookie``)."""

    __slots__ = ("read_session", "request", "user")

    def __init__(self, request: Any, user: Any, read_session: bool) -> None:
        self.request = request
        self.user = user
        self.read_session = read_session

    def __call__(self) -> Any:
        if self.read_session:
            session = getattr(self.request, "session", None)
            if session is not None:
                session.accessed = True
        return self.user


def _seen(request: Any, user: Any, session: Any) -> Any:
    """``user``, just read for the lazy ``request.user``, put in its setup's place; returns ``user``."""
    read_session = bool(getattr(session, "accessed", False))
    request.__dict__["user"].__dict__["_setupfunc"] = _SeenUser(request, user, read_session)
    return user


def _pending_setup(request: Any) -> Any:
    """The setup function of ``request.user`` when it is a lazy object not evaluated yet, else None."""
    lazy = request.__dict__.get("user")
    if type(lazy) is SimpleLazyObject and lazy.__dict__.get("_wrapped") is empty:
        return lazy.__dict__.get("_setupfunc")
    return None


def _is_django_setup(setup: Any) -> bool:
    """True for the setup of the lazy user that ``AuthenticationMiddleware`` puts on a request."""
    global _django_setup_code
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


def _session_at_hand(session: Any) -> bool:
    """True when asking ``session`` for a key needs no I/O: it has no key (no cookie came), or is loaded."""
    return getattr(session, "session_key", True) is None or "_session_cache" in vars(session)


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


def resolve_actor(context: AuditContext | None = None, after_view: bool = False) -> Actor:
    """The actor of the current thread or task (or of ``context``, read from it by the caller), right now.

    ``after_view`` (the request middleware, once the view returned): a user not read yet is read without side
    effects on the session (see :func:`_authenticated_user`). Raises what reading the user raises.
    """
    if context is None:
        context = current()
    explicit = context.actor
    if explicit is not None:
        if _is_user(explicit):
            return actor_from_user(explicit)
        return Actor(str(explicit), None)
    request = context.request
    if request is not None:
        user = _authenticated_user(request, after_view)
        if user is not None:
            return actor_from_user(user)
        return ANONYMOUS_ACTOR
    return _system_actor(context.source or process_source())


def actor_or_unknown(
    reporter_source: str, context: AuditContext | None = None, after_view: bool = False
) -> Actor:
    """:func:`resolve_actor`, but never raising: a user that cannot be read (the session store or the
    database is down) gives :func:`unknown_actor`, and is reported as ``ACTOR_UNKNOWN`` from
    ``reporter_source``. The record goes on with actor ``unknown``: losing it would cost more than the
    user."""
    try:
        return resolve_actor(context, after_view)
    except Exception as exc:
        from .dispatch import pipeline

        pipeline.reporter.problem("ACTOR_UNKNOWN", reporter_source, error=f"{type(exc).__name__}: {exc}")
        return unknown_actor(exc)


def _system_actor(source: str) -> Actor:
    actor = _system_actors.get(source)
    if actor is None:
        if len(_system_actors) >= 256:  # sources named per task run
            _system_actors.clear()
        actor = _system_actors[source] = Actor(f"system:{source}", None)
    return actor


# The actor of work outside any request, by source: the same few for every record of a process.
_system_actors: dict[str, Actor] = {}
