"""The hook implementations shared by every sink that delivers to a remote store through a spool.

A remote sink plugin supplies an :class:`~activity_audit.spool.Uploader` and its option names; this class does
the rest (settings, spool, lifecycle). The plugin module makes one instance and its entry point names it::

    # activity_audit_example/plugin.py
    plugin = RemoteSink("example", option_keys=("url", "token"), secret_keys=("token",), connect=Uploader)

    # pyproject.toml
    [project.entry-points.activity_audit]
    example = "activity_audit_example.plugin:plugin"

Lifecycle, by hook:

``audit_configure``
    With no ``ACTIVITY_AUDIT['PLUGINS'][name]`` entry the plugin stays inactive (installing a plugin must not
    break a project that does not use it). Otherwise the options are checked (``connect`` raises
    ``ImproperlyConfigured`` naming the setting), the spool is prepared, and if a previous run left segments
    the upload thread starts at once. A reload closes the previous spool first.
``sink``
    Appends the batch to the spool (fsynced) and returns; the upload happens on the spool's thread.
``audit_shutdown``
    Stops the upload thread and keeps the spool for the next start: nothing is uploaded at shutdown. A batch
    that still comes (records submitted after the exit drain) is stored in the spool, sealed at once, and
    uploaded by the next start.
``audit_after_fork``
    The child drops the parent's segment and thread and starts its own on its first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .markers import hookimpl
from .plugin_options import PluginOptions
from .spool import SPOOL_OPTION_KEYS, Spool, SpoolOptions, Uploader

if TYPE_CHECKING:
    from .conf import AuditSettings
    from .records import Entry


class RemoteSink:
    """One remote sink plugin: ``connect(options)`` checks the options and returns the uploader."""

    def __init__(
        self,
        name: str,
        *,
        option_keys: Sequence[str],
        connect: Callable[[PluginOptions], Uploader],
        secret_keys: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.option_keys = (*option_keys, *SPOOL_OPTION_KEYS)
        self.secret_keys = tuple(secret_keys)
        self.connect = connect
        self.spool: Spool | None = None
        self._closed_at_shutdown: Spool | None = None  # still takes the batches that come after shutdown

    @hookimpl
    def audit_configure(self, settings: AuditSettings) -> None:
        self._close()
        self._closed_at_shutdown = None
        if self.name not in settings.PLUGINS:
            return
        options = PluginOptions.from_settings(settings, self.name, self.option_keys, self.secret_keys)
        spool_options = SpoolOptions.read(options, settings)
        self.spool = Spool(self.name, spool_options, self.connect(options))
        if self.spool.backlog():
            self.spool.start()

    @hookimpl
    def sink(self, records: Sequence[Entry]) -> None:
        spool = self.spool if self.spool is not None else self._closed_at_shutdown
        if spool is not None:
            spool.append(records)

    @hookimpl
    def audit_shutdown(self) -> None:
        self._closed_at_shutdown = self.spool
        self._close()

    @hookimpl
    def audit_after_fork(self) -> None:
        if self.spool is not None:
            self.spool.after_fork()

    def _close(self) -> None:
        spool, self.spool = self.spool, None
        if spool is not None:
            spool.close()
