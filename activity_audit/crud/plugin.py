"""The built-in CRUD plugin: ``audit_configure`` wires the capture to the settings, idempotently.

Registered as ``activity_audit.crud.plugin`` (``manager.BUILTIN_PLUGINS``); put that name in
``DISABLED_PLUGINS`` to turn CRUD capture off at start-up.
"""

from __future__ import annotations

from ..conf import AuditSettings
from ..markers import hookimpl
from . import (
    auth,
    bulk,
    commands,
    db_deletes,
    loading,
    options,
    receivers,
    selection,
    snapshots,
    transactions,
)


@hookimpl
def audit_configure(settings: AuditSettings) -> None:
    options.configure(settings)
    selection.configure(settings)
    snapshots.limits = settings.limits
    snapshots._vendors.clear()
    bulk.install()
    db_deletes.install()
    loading.install()
    commands.install()
    transactions.keep_audit_callbacks()
    if settings.ENABLED:
        receivers.connect(selection.audited_models())
        auth.connect()
    else:
        receivers.connect(())
        auth.disconnect()


def deactivate() -> None:
    """Undo :func:`audit_configure`'s wiring: no model audited, no receiver connected.

    Called at start-up and at every reload while this plugin is not registered (``DISABLED_PLUGINS``): the
    receivers and the wrapped ``QuerySet`` methods are process-wide, so blocking the plugin alone would
    leave them recording after a reload that disabled it.
    """
    selection.audit_nothing()
    db_deletes.forget()
    receivers.connect(())
    auth.disconnect()
