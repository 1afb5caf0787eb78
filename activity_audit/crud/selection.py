"""Which models are audited, and how each of their fields appears in a record.

A model is audited unless it is one of Django's internals or the package's own (:data:`DEFAULT_EXCLUDED`), or
``EXCLUDE_MODELS`` names it, or ``INCLUDE_MODELS`` is set and does not name it. Naming a model exactly
(``"sessions.Session"``) in ``INCLUDE_MODELS`` audits it even if it is excluded by default; ``EXCLUDE_MODELS``
always wins. Patterns are ``"app_label.Model"`` or ``"app_label.*"``, compared case-insensitively.

A field of an audited model is *excluded* (never in a record, not even in memory) when ``EXCLUDE_FIELDS``
names it, and *masked* (a change shows as ``{"changed": true, "masked": true}``, never a value) when
``MASK_FIELDS`` names it, when it is the password of a user model or the data of a session model, or when
its name is one the built-in redactor masks wherever it appears (``password``, ``token``, ``api_key`` ...
plus ``REDACT_KEYS``, see :mod:`activity_audit.redaction`), so that a CRUD record shows the same thing
whether or not the redactor runs. Primary keys are not listed
among the changes: the record's ``instance_id`` carries them.

:func:`policy_for` is called on every captured change, so its answer is cached per model class until the
next :func:`configure`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models

from ..conf import AuditSettings
from ..redaction import Redactor
from .stored_forms import Normaliser, normaliser_for

# Django's internals and the package's own models: auditing them is noise or leaks secrets.
DEFAULT_EXCLUDED: tuple[str, ...] = (
    "sessions.*",
    "contenttypes.*",
    "migrations.*",
    "admin.logentry",
    "auth.permission",
    "activity_audit.*",
)

# Field names masked on top of the keys the built-in redactor treats as secrets (activity_audit.redaction).
SENSITIVE_NAMES: frozenset[str] = frozenset({"session_data"})

# How a field's value is copied into the snapshot (see snapshots.py).
PLAIN = 0  # immutable values (str, int, Decimal, date, UUID ...): kept as they are
MUTABLE = 1  # values that may be mutated in place (JSON dicts and lists ...): deep-copied
FILE = 2  # FieldFile: the stored name

_IMMUTABLE_FIELDS: tuple[type[models.Field[Any, Any]], ...] = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.FloatField,
    models.DecimalField,
    models.BooleanField,
    models.DateField,
    models.TimeField,
    models.DurationField,
    models.UUIDField,
    models.GenericIPAddressField,
    models.BinaryField,
    models.ForeignKey,
)


_PYTHON_TYPES: tuple[tuple[type[models.Field[Any, Any]], type], ...] = (
    (models.DecimalField, decimal.Decimal),
    (models.DateTimeField, dt.datetime),  # before DateField, its base class
    (models.DateField, dt.date),
    (models.TimeField, dt.time),
    (models.UUIDField, uuid.UUID),
    (models.FloatField, float),
    (models.BooleanField, bool),
    (models.IntegerField, int),
    (models.CharField, str),
    (models.TextField, str),
)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One concrete field as records show it: ``name`` in records, ``attname`` in ``instance.__dict__``."""

    name: str
    attname: str
    kind: int
    masked: bool
    field: models.Field[Any, Any]
    # The Python type the database gives back; a value of another type (``price=0``,
    # ``published="2024-01-02"``, ``author_id="1"``) is converted with ``field.to_python`` before it is
    # compared or recorded.
    python_type: type | None = None
    # DecimalField: ``Decimal(10) ** -decimal_places``; a saved value is rounded to it as the database does.
    quantum: decimal.Decimal | None = None
    # Brings a saved value of the right type to the form the database stores (see stored_forms.py).
    normalise: Normaliser | None = None


class ModelPolicy:
    """What is recorded for one audited model class."""

    __slots__ = (
        "attnames",
        "by_name",
        "decimals",
        "excluded",
        "fields",
        "files",
        "label",
        "masked",
        "model",
        "mutables",
        "name",
        "normalised",
        "pk_attname",
        "pk_field",
        "pk_type",
        "typed",
    )

    def __init__(
        self,
        model: type[models.Model],
        fields: tuple[FieldSpec, ...],
        excluded: frozenset[str] = frozenset(),
        masked: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.excluded = excluded  # names left out of records (EXCLUDE_FIELDS), m2m accessors included
        self.masked = masked  # names whose values never appear (MASK_FIELDS and secret names)
        self.label: str = model._meta.label
        self.name: str = model.__name__
        pk_field = model._meta.pk
        self.pk_attname: str = pk_field.attname if pk_field else "pk"
        self.pk_field = pk_field
        self.pk_type = _python_type(pk_field) if pk_field else None
        self.fields = fields
        self.by_name: dict[str, FieldSpec] = {}
        for spec in fields:
            self.by_name[spec.name] = spec
            self.by_name[spec.attname] = spec
        self.attnames: tuple[str, ...] = tuple(spec.attname for spec in fields)
        self.mutables: tuple[FieldSpec, ...] = tuple(spec for spec in fields if spec.kind == MUTABLE)
        self.files: tuple[str, ...] = tuple(spec.attname for spec in fields if spec.kind == FILE)
        self.typed: tuple[FieldSpec, ...] = tuple(spec for spec in fields if spec.python_type is not None)
        self.decimals: tuple[FieldSpec, ...] = tuple(spec for spec in fields if spec.quantum is not None)
        self.normalised: tuple[FieldSpec, ...] = tuple(
            spec for spec in fields if spec.normalise is not None and spec.kind != MUTABLE
        )

    def canonical_pk(self, pk: Any) -> Any:
        """``pk`` as the database holds it (``"A1B2..."`` given for a UUID pk is the UUID ``a1b2-...``)."""
        if pk is None or self.pk_type is None or type(pk) is self.pk_type or self.pk_field is None:
            return pk
        try:
            return self.pk_field.to_python(pk)
        except Exception:  # Django refuses it on save; keep what was given
            return pk


@dataclass(frozen=True)
class Rules:
    """The selection settings, normalised to lower case."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    mask_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    secret_keys: Redactor = field(default_factory=Redactor)

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> Rules:
        return cls(
            include=tuple(pattern.lower() for pattern in settings.INCLUDE_MODELS),
            exclude=tuple(pattern.lower() for pattern in settings.EXCLUDE_MODELS),
            exclude_fields=_lower_keys(settings.EXCLUDE_FIELDS),
            mask_fields=_lower_keys(settings.MASK_FIELDS),
            secret_keys=Redactor(settings.REDACT_KEYS),
        )

    def audits(self, model: type[models.Model]) -> bool:
        """Whether ``model`` is audited. A proxy is judged as the model whose rows it shows as well: a
        pattern that names that model names its proxies too (``EXCLUDE_MODELS`` still wins)."""
        labels = _same_rows(model)
        if any(_matches(label, self.exclude) for label in labels):
            return False
        if self.include:
            if any(label in self.include for label in labels):
                return True
            if not any(_matches(label, self.include) for label in labels):
                return False
        return not (any(_matches(label, DEFAULT_EXCLUDED) for label in labels) or _is_session_model(model))

    def policy(self, model: type[models.Model]) -> ModelPolicy:
        """The fields of ``model`` to record and to mask. ``EXCLUDE_FIELDS`` and ``MASK_FIELDS`` given for a
        model apply wherever its fields are written: through its proxies and its multi-table children too."""
        labels = _field_owners(model)
        excluded = frozenset().union(*(_names_for(label, self.exclude_fields) for label in labels))
        masked = frozenset().union(*(_names_for(label, self.mask_fields) for label in labels))
        masked |= _built_in_secrets(model)
        return ModelPolicy(model, self.fields_of(model, excluded, masked), excluded, masked)

    def is_masked(self, name: str, masked: frozenset[str]) -> bool:
        return name in masked or name.lower() in SENSITIVE_NAMES or self.secret_keys.is_sensitive_key(name)

    def fields_of(
        self, model: type[models.Model], excluded: frozenset[str], masked: frozenset[str]
    ) -> tuple[FieldSpec, ...]:
        specs = []
        for model_field in model._meta.concrete_fields:
            if model_field.primary_key or model_field.name in excluded or model_field.attname in excluded:
                continue
            is_masked = self.is_masked(model_field.name, masked) or model_field.attname in masked
            specs.append(
                FieldSpec(
                    model_field.name,
                    model_field.attname,
                    _kind(model_field),
                    is_masked,
                    model_field,
                    _python_type(model_field),
                    _quantum(model_field),
                    normaliser_for(model_field),
                )
            )
        return tuple(specs)


_rules: Rules | None = Rules()  # None: CRUD capture is off (its plugin is disabled)
_policies: dict[type[models.Model], ModelPolicy | None] = {}


def configure(settings: AuditSettings) -> None:
    """Apply the selection settings and forget every cached answer."""
    global _rules
    _rules = Rules.from_settings(settings)
    _policies.clear()


def audit_nothing() -> None:
    """From now on no model is audited (until :func:`configure`)."""
    global _rules
    _rules = None
    _policies.clear()


def policy_for(model: type[models.Model]) -> ModelPolicy | None:
    """The policy of ``model``, or None when it is not audited."""
    try:
        return _policies[model]
    except KeyError:
        pass
    policy = _rules.policy(model) if _rules is not None and _rules.audits(model) else None
    _policies[model] = policy
    return policy


def is_recorded(policy: ModelPolicy, name: str) -> bool:
    """False when ``EXCLUDE_FIELDS`` leaves ``name`` (a field or m2m accessor) out of this model's records."""
    return name not in policy.excluded


def is_masked(policy: ModelPolicy, name: str) -> bool:
    """True when the values of ``name`` (a field or m2m accessor) must never appear in a record."""
    return (_rules or Rules()).is_masked(name, policy.masked)


def audited_models() -> list[type[models.Model]]:
    """Every installed model that is audited (proxies included, auto-created m2m tables not)."""
    return [model for model in apps.get_models() if policy_for(model) is not None]


def _matches(label: str, patterns: Iterable[str]) -> bool:
    app_label = label.split(".", 1)[0]
    return any(pattern == label or pattern == f"{app_label}.*" for pattern in patterns)


def _same_rows(model: type[models.Model]) -> tuple[str, ...]:
    """The labels of ``model`` and of every model it is a proxy of, up to the concrete one (same rows)."""
    labels = [model._meta.label_lower]
    while model._meta.proxy and model._meta.proxy_for_model is not None:
        model = model._meta.proxy_for_model
        labels.append(model._meta.label_lower)
    return tuple(labels)


def _field_owners(model: type[models.Model]) -> tuple[str, ...]:
    """The labels of the models whose fields ``model`` writes: itself and the models it is a proxy of
    (:func:`_same_rows`), and the multi-table parents of the concrete one."""
    concrete = model._meta.concrete_model or model
    parents = tuple(parent._meta.label_lower for parent in concrete._meta.get_parent_list())
    return _same_rows(model) + parents


def _names_for(label: str, by_model: Mapping[str, frozenset[str]]) -> frozenset[str]:
    app_label = label.split(".", 1)[0]
    return by_model.get(label, frozenset()) | by_model.get(f"{app_label}.*", frozenset())


def _lower_keys(by_model: Mapping[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    return {model.lower(): frozenset(names) for model, names in by_model.items()}


def _kind(field: models.Field[Any, Any]) -> int:
    if isinstance(field, models.FileField):
        return FILE
    return PLAIN if isinstance(field, _IMMUTABLE_FIELDS) else MUTABLE


def _quantum(field: models.Field[Any, Any]) -> decimal.Decimal | None:
    places = getattr(field, "decimal_places", None) if isinstance(field, models.DecimalField) else None
    return None if places is None else decimal.Decimal(1).scaleb(-places)


def _python_type(field: models.Field[Any, Any]) -> type | None:
    if isinstance(field, models.ForeignKey):  # holds the related pk: the type of the field it points to
        return _python_type(field.target_field)
    for field_class, python_type in _PYTHON_TYPES:
        if isinstance(field, field_class):
            return python_type
    return None


def _built_in_secrets(model: type[models.Model]) -> frozenset[str]:
    """The password hash of user models and the payload of session models."""
    from django.contrib.auth.base_user import AbstractBaseUser

    names: set[str] = set()
    if issubclass(model, AbstractBaseUser):
        names.add("password")
    if _is_session_model(model):
        names.add("session_data")
    return frozenset(names)


def _is_session_model(model: type[models.Model]) -> bool:
    try:
        from django.contrib.sessions.base_session import AbstractBaseSession
    except ImportError:  # pragma: no cover - django.contrib.sessions is always importable
        return False
    return issubclass(model, AbstractBaseSession)
