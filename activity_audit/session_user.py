"""The logged-in user of a request's session, decided as Django decides it, without touching the session.

Django's ``get_user`` / ``aget_user`` do more than read: a session whose auth hash only a key of
``SECRET_KEY_FALLBACKS`` verifies gets a new key (``cycle_key``) and the current hash, and a session no key
verifies is flushed. That is right when the view asks for the user, while ``SessionMiddleware`` can still
save the session and send its new cookie. The audit asks after the view, often after ``SessionMiddleware``
finished the response: a new key made then never reaches the client, whose cookie now names a session that
no longer exists, and it is logged out. So the audit reads the same session keys, asks the same backend,
and verifies the hash against the same secrets, but never writes, cycles or flushes the session: where
Django would cycle the key the user is the user, where it would flush the session there is no user.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.utils.crypto import constant_time_compare


def session_user(request: Any) -> Any:
    """The user Django's ``get_user(request)`` would return, or None where it would return an anonymous user.

    Reads ``request.session`` (which marks it accessed: callers that care restore the flag) and the user
    through the backend the session names; raises what those reads raise (a database error).
    """
    session = request.session
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    return _verified(user, session.get(HASH_SESSION_KEY))


async def asession_user(request: Any) -> Any:
    """:func:`session_user` as Django's ``aget_user`` reads it: the session and the backend through their
    async methods (Django 5.0+); without them, :func:`session_user` on a thread."""
    session = request.session
    if not hasattr(session, "aget"):
        return await sync_to_async(session_user)(request)
    raw_id = await session.aget(SESSION_KEY)
    if raw_id is None:
        return None
    user_id = get_user_model()._meta.pk.to_python(raw_id)
    backend_path = await session.aget(BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    backend = load_backend(backend_path)
    if hasattr(backend, "aget_user"):
        user = await backend.aget_user(user_id)
    else:
        user = await sync_to_async(backend.get_user)(user_id)
    return _verified(user, await session.aget(HASH_SESSION_KEY))


def _verified(user: Any, session_hash: Any) -> Any:
    """``user`` when Django would keep it logged in with ``session_hash``, else None.

    A user model without ``get_session_auth_hash`` is not verified (as in Django). Otherwise the hash must
    match the one made with ``SECRET_KEY`` or with a key of ``SECRET_KEY_FALLBACKS``.
    """
    if user is None or not hasattr(user, "get_session_auth_hash"):
        return user
    if not session_hash:
        return None
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return user
    fallback_hashes = getattr(user, "get_session_auth_fallback_hash", None)  # absent on custom users
    if fallback_hashes is not None and any(
        constant_time_compare(session_hash, fallback) for fallback in fallback_hashes()
    ):
        return user
    return None
