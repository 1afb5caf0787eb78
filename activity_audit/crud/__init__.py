"""Model changes as ``audit.crud`` records: saves, deletes, many-to-many changes, bulk writes and logins.

One module per job:

``selection``     which models and fields are audited, which are masked
``snapshots``     the values loaded from the database, kept on the instance, and the diffs they give
``events``        the record's shape
``transactions``  emit on commit of the change's own database, never after a rollback
``receivers``     ``post_init`` / ``post_save`` / ``post_delete`` receivers and their connection
``deletions``     rows deleted by a ``QuerySet.delete()`` or a cascade, summarised by pk
``m2m``           many-to-many changes from either side
``bulk``          ``QuerySet.update()``, ``bulk_create()``, ``bulk_update()``, which send no signal
``auth``          ``LOGIN``, ``LOGOUT``, ``LOGIN_FAILED``
``commands``      management commands name themselves as ``system:<command>``
``plugin``        the built-in plugin that wires it all up in ``audit_configure``

The record schema and every event type are documented in ``docs/crud.md``.
"""
