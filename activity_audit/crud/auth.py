"""Authentication events from ``django.contrib.auth`` signals: ``LOGIN``, ``LOGOUT``, ``LOGIN_FAILED``.

The records carry the username (the one tried, for a failure), the client IP and the request id, and never a
password: of the credentials Django passes on a failure, only the username field is read. They are emitted
at once, not at commit: a failed login must be recorded even when the request's transaction rolls back.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from ..actor import actor_from_user, actor_or_unknown
from ..context import current
from ..dispatch import pipeline
from ..encoding import snapshot
from ..records import now
from .events import LOGIN, LOGIN_FAILED, LOGOUT, Moment, crud_record, instance_id_of
from .transactions import emit_now

_UID = "activity_audit.crud.auth"


def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    _emit(LOGIN, user, request, username=_username_of(user))


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    _emit(LOGOUT, user, request, username=_username_of(user) if user is not None else None)


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    _emit(LOGIN_FAILED, None, request, username=_username_tried(credentials))


def connect() -> None:
    user_logged_in.connect(on_logged_in, weak=False, dispatch_uid=_UID)
    user_logged_out.connect(on_logged_out, weak=False, dispatch_uid=_UID)
    user_login_failed.connect(on_login_failed, weak=False, dispatch_uid=_UID)


def disconnect() -> None:
    for signal in (user_logged_in, user_logged_out, user_login_failed):
        signal.disconnect(dispatch_uid=_UID)


def _emit(event_type: str, user: Any, request: Any, username: Any) -> None:
    try:
        # user.__class__, not type(user): a request's lazy user (SimpleLazyObject) reports the real class
        user_model = user.__class__ if user is not None else get_user_model()
        pk = getattr(user, "pk", None)
        # The user logging in or out is the actor; without one (a failure) it is whoever is current.
        actor = actor_from_user(user) if pk is not None else actor_or_unknown("crud:auth")
        when = Moment(now(), actor, current().request_id)
        record = crud_record(
            event_type,
            user_model.__name__,
            user_model._meta.label,
            instance_id_of(pk),
            getattr(getattr(user, "_state", None), "db", None),
            when,
            message=f"{event_type} event for {user_model.__name__} (username: {username})",
            username=snapshot(username),
            client_ip=_client_ip(request),
        )
        emit_now(record)
    except Exception as exc:
        pipeline.reporter.problem("CAPTURE_FAILED", "crud:auth", error=f"{type(exc).__name__}: {exc}")


def _username_of(user: Any) -> Any:
    getter = getattr(user, "get_username", None)
    return getter() if callable(getter) else getattr(user, "username", None)


def _username_tried(credentials: dict[str, Any]) -> Any:
    field = getattr(get_user_model(), "USERNAME_FIELD", "username")
    return credentials.get(field, credentials.get("username"))


def _client_ip(request: Any) -> str | None:
    known = current().client_ip
    if known:
        return known
    meta = getattr(request, "META", None)
    address = meta.get("REMOTE_ADDR") if isinstance(meta, dict) else None
    return str(address) if address else None
