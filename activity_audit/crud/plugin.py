"""The built-in CRUD plugin: ``audit_configure`` wires the capture to the settings, idempotently.

Registered as ``activity_audit.crud.plugin`` (``manager.BUILTIN_PLUGINS``); put that name in
``DISABLED_PLUGINS`` to turn CRUD capture off at start-up.
"""

from __future__ import annotations

from ..conf import AuditSettings
from ..markers import hookimpl
from . import auth, bulk, commands, loading, options, receivers, selection, snapshots, transactions


@hookimpl
def audit_configure(settings: AuditSettings) -> None:
    options.configure(settings)
    selection.configure(settings)
    snapshots.limits = settings.limits
    snapshots._vendors.clear()
    bulk.install()
    loading.install()
    commands.install()
    transactions.keep_audit_callbacks()
    if settings.ENABLED:
        receivers.connect(selection.audited_models())
        auth.connect()
    else:
        receivers.connect(())
        auth.disconnect()
