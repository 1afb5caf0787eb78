"""Django system checks: what ``manage.py check`` tells about the audit set-up.

Settings errors stop start-up in ``AppConfig.ready`` already (servers like gunicorn never run checks); these
checks add what does not justify refusing to start, and what only a look at other settings or at the installed
models and plugins reveals: a name inside a setting's value that names nothing. A misspelled model or field in
``INCLUDE_MODELS``, ``EXCLUDE_MODELS``, ``EXCLUDE_FIELDS`` or ``MASK_FIELDS`` silently turns a protection off,
so it is an error; an unknown name in ``USER_FIELDS``, ``PLUGINS`` or ``DISABLED_PLUGINS`` is a warning.
Django runs them with ``manage.py check`` and before ``runserver``, ``migrate`` and the like.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.core import checks
from django.db import models

from . import conf

MIDDLEWARE_PATH = "activity_audit.middleware.AuditLoggingMiddleware"


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    audit = conf.get_settings()
    messages: list[checks.CheckMessage] = []
    if not audit.ENABLED:
        messages.append(
            checks.Warning(
                "Auditing is off: ACTIVITY_AUDIT['ENABLED'] is False, so no audit record is written.",
                id="activity_audit.W001",
            )
        )
    messages.extend(_public_log_dir(audit.LOG_DIR))
    messages.extend(_unknown_disabled_plugins(audit.DISABLED_PLUGINS))
    for key in ("INCLUDE_MODELS", "EXCLUDE_MODELS"):
        for pattern in getattr(audit, key):
            messages.extend(_unknown_model(key, pattern))
    for key in ("EXCLUDE_FIELDS", "MASK_FIELDS"):
        messages.extend(_unknown_fields(key, getattr(audit, key)))
    messages.extend(_unknown_user_fields(audit.USER_FIELDS))
    messages.extend(_unknown_plugin_options(audit.PLUGINS, audit.DISABLED_PLUGINS))
    return messages


def _public_log_dir(log_dir: Path) -> list[checks.CheckMessage]:
    from django.conf import settings as django_settings

    messages: list[checks.CheckMessage] = []
    for name in ("STATIC_ROOT", "MEDIA_ROOT"):
        root = getattr(django_settings, name, None)
        if root and log_dir.resolve().is_relative_to(Path(root).resolve()):
            messages.append(
                checks.Error(
                    f"ACTIVITY_AUDIT['LOG_DIR'] ({log_dir}) is inside {name}: the audit trail would be "
                    "public.",
                    id="activity_audit.E001",
                )
            )
    return messages


def _unknown_disabled_plugins(disabled: tuple[str, ...]) -> list[checks.CheckMessage]:
    """A misspelled name in DISABLED_PLUGINS leaves the plugin it meant running: say so."""
    from .manager import known_plugin_names

    known = known_plugin_names()
    messages: list[checks.CheckMessage] = []
    for name in disabled:
        if name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1)
        messages.append(
            checks.Warning(
                f"ACTIVITY_AUDIT['DISABLED_PLUGINS'] names '{name}', which is not a plugin here, so it "
                "blocks nothing.",
                hint=f"Did you mean '{near[0]}'?" if near else f"Known plugins: {', '.join(sorted(known))}.",
                id="activity_audit.W002",
            )
        )
    return messages


def _did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The hint for a misspelled ``name``: the nearest candidate, ignoring case, or None."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    near = difflib.get_close_matches(name.lower(), by_lower, n=1)
    return f"Did you mean '{by_lower[near[0]]}'?" if near else None


def _matching_models(pattern: str) -> list[type[models.Model]]:
    """The installed models an ``"app_label.Model"`` or ``"app_label.*"`` pattern names (case-insensitive)."""

    app_label, name = pattern.lower().split(".", 1)
    return [
        model
        for model in _installed_models()
        if model._meta.app_label.lower() == app_label and name in ("*", model._meta.model_name)
    ]


def _installed_models() -> list[type[models.Model]]:
    from django.apps import apps

    # Swapped models too: MASK_FIELDS for "auth.User" is valid in a project with its own user model.
    return apps.get_models(include_auto_created=True, include_swapped=True)


def _unknown_model(key: str, pattern: str) -> list[checks.CheckMessage]:
    """E002 for a pattern that matches no model: a typo that silently turns a setting off. Only an
    ``EXCLUDE_*`` pattern for an app that is not installed gets W005 instead: excluding what does not exist is
    harmless, and a settings file shared by several projects may name apps only some of them have."""
    from django.apps import apps

    if _matching_models(pattern):
        return []
    installed = _installed_models()
    app_label = pattern.split(".", 1)[0].lower()
    app_installed = any(config.label.lower() == app_label for config in apps.get_app_configs())
    if key.startswith("EXCLUDE_") and not app_installed:
        return [
            checks.Warning(
                f"ACTIVITY_AUDIT['{key}'] names '{pattern}', but no installed app has the label "
                f"'{app_label}', so it has no effect here.",
                hint=_did_you_mean(f"{app_label}.*", {f"{model._meta.app_label}.*" for model in installed}),
                id="activity_audit.W005",
            )
        ]
    if pattern.endswith(".*"):
        candidates = {f"{model._meta.app_label}.*" for model in installed}
    else:
        candidates = {model._meta.label for model in installed}
    return [
        checks.Error(
            f"ACTIVITY_AUDIT['{key}'] names '{pattern}', which matches no installed model.",
            hint=_did_you_mean(pattern, candidates),
            id="activity_audit.E002",
        )
    ]


def _field_names(model: type[models.Model]) -> set[str]:
    """Every name a field setting may use for ``model``: fields, ``*_id`` columns and m2m accessors."""
    names: set[str] = set()
    for model_field in model._meta.get_fields(include_hidden=True):
        names.add(model_field.name)
        names.add(getattr(model_field, "attname", model_field.name))
        if model_field.auto_created and not model_field.concrete:  # a reverse relation: its accessor
            accessor = model_field.get_accessor_name()  # type: ignore[union-attr]
            if accessor:
                names.add(accessor)
    return names


def _unknown_fields(key: str, by_model: Mapping[str, tuple[str, ...]]) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for pattern, names in by_model.items():
        matched = _matching_models(pattern)
        if not matched:
            messages.extend(_unknown_model(key, pattern))
            continue
        known = set().union(*(_field_names(model) for model in matched))
        where = f"any model of '{pattern}'" if pattern.endswith(".*") else f"{matched[0]._meta.label}"
        for name in names:
            if name not in known:
                messages.append(
                    checks.Error(
                        f"ACTIVITY_AUDIT['{key}']['{pattern}'] names '{name}', which is not a field of "
                        f"{where}.",
                        hint=_did_you_mean(name, known),
                        id="activity_audit.E003",
                    )
                )
    return messages


def _unknown_user_fields(user_fields: tuple[str, ...]) -> list[checks.CheckMessage]:
    """A name the user model does not have is recorded as null for every user."""
    from django.contrib.auth import get_user_model

    try:
        user_model = get_user_model()
    except Exception:  # no auth app, or AUTH_USER_MODEL is wrong (Django's own checks say so)
        return []
    known = _field_names(user_model)
    messages: list[checks.CheckMessage] = []
    for name in user_fields:
        if name in ("id", "username") or name in known or hasattr(user_model, name):
            continue
        messages.append(
            checks.Warning(
                f"ACTIVITY_AUDIT['USER_FIELDS'] names '{name}', which {user_model._meta.label} does not "
                "have, so it is recorded as null.",
                hint=_did_you_mean(name, known),
                id="activity_audit.W003",
            )
        )
    return messages


def _unknown_plugin_options(
    options: Mapping[str, Any], disabled: tuple[str, ...]
) -> list[checks.CheckMessage]:
    """Options that name no loaded plugin, and that no plugin read, configure nothing (a misspelled sink stays
    inactive). Options kept for a plugin in ``DISABLED_PLUGINS`` are deliberate."""
    from .manager import get_plugin_manager

    pm = get_plugin_manager()
    loaded = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    read = conf.plugin_options_read()
    messages: list[checks.CheckMessage] = []
    for name in options:
        if name in loaded or name in read or name in disabled:
            continue
        hint = _did_you_mean(name, loaded)
        messages.append(
            checks.Warning(
                f"ACTIVITY_AUDIT['PLUGINS'] has options for '{name}', which no loaded plugin reads, so they "
                "configure nothing.",
                hint=hint or f"Loaded plugins: {', '.join(sorted(loaded))}.",
                id="activity_audit.W004",
            )
        )
    return messages


def register() -> None:
    checks.register(check_setup, "activity_audit")
