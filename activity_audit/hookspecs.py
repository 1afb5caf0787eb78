"""The contract between the core and every plugin: one function per hook.

Each docstring says who calls the hook, when, on which thread, with what, what an implementation may return
and what happens when it raises. Implementations are plain functions (or methods) decorated with
``activity_audit.hookimpl``; they may accept any subset of the arguments named here.

Threads
    *Caller thread* is the thread that made the change or served the request: keep work there tiny.
    *Worker thread* is the pipeline's single processing thread (``activity-audit-worker``).
    *Sink thread* is the thread each ``sink`` implementation gets (``activity-audit-sink:<plugin name>``).

Speed
    ``redact`` and ``format_record`` run once per record, so the core calls their implementations directly, in
    pluggy's order (last registered first, ``tryfirst``/``trylast`` honoured), instead of going through
    ``pm.hook``. Hook wrappers on those two hooks are still honoured: when one is registered the core falls
    back to the ordinary pluggy call. ``audit_crud_event``, ``audit_request``, ``sink``, ``audit_shutdown``
    and ``audit_after_fork`` are called one implementation at a time too, so that each failure is isolated
    and named: a hook wrapper on one of them stops start-up with ``ImproperlyConfigured`` naming the plugin
    (it could not wrap anything). ``audit_configure`` goes through ``pm.hook`` at start-up and reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .conf import AuditSettings
    from .records import Entry

hookspec = pluggy.HookspecMarker("activity_audit")


@hookspec
def audit_configure(settings: AuditSettings) -> None:
    """Validate and apply settings, once, at start-up.

    Called by ``AppConfig.ready()`` on the thread that sets Django up (normally the main thread) after every
    plugin is loaded, in call order; again by :func:`activity_audit.runtime.reload` when tests change
    ``ACTIVITY_AUDIT``; and for a plugin added by :func:`activity_audit.manager.register_plugin`, at once.
    A plugin reads its own options with ``settings.plugin_config("<name>")``. Raising
    :class:`django.core.exceptions.ImproperlyConfigured` stops start-up with that message; the message must
    name the setting at fault and must not contain secrets. Any other exception stops start-up too.
    """


@hookspec
def audit_crud_event(record: dict[str, Any]) -> bool | None:
    """Observe, enrich or veto one model change or authentication event before it is queued.

    Called on the caller thread (for changes inside a transaction: when the transaction commits) with the
    record as a plain dict (see :mod:`activity_audit.records`), in its final shape: values the capture left
    for the worker (:mod:`activity_audit.deferred`) are built before the first implementation runs. Every
    implementation runs. An implementation may add or change keys in place; values must already be plain
    JSON values (use :func:`activity_audit.encoding.snapshot`). Returning ``False`` vetoes the record: it is
    not queued and no sequence number is spent on it. Any other return value is ignored. An exception is
    reported and counted, the record is still queued (a faulty enricher must not cost an audit record), and
    the user's operation is never affected.
    """


@hookspec
def audit_request(record: dict[str, Any]) -> bool | None:
    """Observe, enrich or veto one incoming or outbound request record before it is queued.

    Called on the caller thread after the response (or the error) is known, for records of logger
    ``audit.request`` built by the middleware, ``HTTPClient`` and ``SFTPClient``. Every implementation runs
    and may change the record in place (plain JSON values only). Returning ``False`` vetoes the record: it is
    not queued and spends no sequence number. An exception is reported and counted, the record is still
    queued, and the request is never affected.
    """


@hookspec
def redact(record: dict[str, Any]) -> None:
    """Remove secrets from one record, in place, before it is formatted.

    Called on the worker thread, once per record, for every record of every kind (CRUD, request, container
    log, pipeline events). Every implementation runs, last registered first. Mask values, keep keys, and add
    the masked paths to ``record["redacted"]`` (a list) so a reader sees what was hidden. Return value
    ignored. If an implementation raises, the record is not written as it was: it is replaced by a stub that
    keeps the envelope (``event_id``, ``stream_id``, ``seq``, ``timestamp``, ``level``, ``name``,
    ``event_type``) and names the plugin in ``"redaction_failed"``; the failure is counted and reported
    (``REDACTION_FAILED``).

    The built-in ``activity_audit.plugins.deferred_values`` (``tryfirst``) first builds the values capture
    left for the worker (:mod:`activity_audit.deferred`), so implementations see the documented record; a
    ``tryfirst`` implementation of your own may see a ``Pending`` and should call
    :func:`activity_audit.deferred.realise_pending` first.
    """


@hookspec(firstresult=True)
def format_record(record: dict[str, Any]) -> bytes | None:
    """Turn one redacted record into exactly one line of UTF-8 JSON, without the trailing newline.

    Called on the worker thread, once per record; stops at the first implementation that returns bytes, see
    pluggy's ``firstresult``. The built-in implementation (``trylast``) uses
    :func:`activity_audit.encoding.dumps_line`, which never fails and never emits a raw line separator;
    a custom implementation should call it too for anything it does not handle itself. If an
    implementation raises, returns something that is not ``bytes``, an empty line, bytes that are not UTF-8,
    or a line holding a raw ASCII line break (``\n``, ``\r``, ``\v``, ``\f``, ``\x1c``-``\x1e``), the built-in
    encoding is used for that record and the fault is reported (``FORMAT_FAILED``, with the plugin's name). A
    raw U+0085, U+2028 or U+2029 in a returned line is escaped by the core.
    """


@hookspec
def sink(records: Sequence[Entry]) -> None:
    """Deliver one batch of formatted records.

    Each implementation gets every batch on a thread of its own, in submission order, behind a backlog of at
    most ``SINK_QUEUE_SIZE`` records and ``SINK_QUEUE_BYTES`` bytes. When that backlog is full, a sink that
    keeps finishing batches sets the pace of the worker (and so of every sink); one that finishes nothing for
    ``dispatch.STALL_AFTER`` seconds is stalled and loses the batches that do not fit (``SINK_BACKLOG_FULL``)
    until it finishes one again, so it holds back no other sink.

    ``records`` is a sequence of :class:`activity_audit.records.Entry` (``channel``, ``record``, ``line``)
    that the sink must not mutate. Return when the batch is stored as durably as the sink promises. Raising
    means "this batch was not stored": the core counts every record of it as lost for that sink and reports
    the failure with the plugin's name, on stderr and as a ``SINK_FAILED`` record that goes to every sink,
    this one included (the first failure at once, later ones summed once per ``REPORT_INTERVAL``). Raise
    :class:`activity_audit.errors.PartialDelivery` when only ``delivered`` records of the batch were stored.
    A sink that needs retries (a remote store) keeps its own spool and retries behind this call:
    :class:`activity_audit.remote_sink.RemoteSink` implements this hook and the lifecycle hooks over
    :class:`activity_audit.spool.Spool` (append and fsync here, upload on a thread of its own).
    """


@hookspec
def audit_shutdown() -> None:
    """Release resources: close files and connections, stop background threads.

    Called once, on the thread that stops the pipeline (the main thread at ``atexit`` or on SIGTERM; in a
    terminated ``multiprocessing`` or billiard child, the package's SIGTERM thread), after the last batch has
    been handed to every sink and every responsive sink has finished it. Must return within
    a few seconds: a remote sink keeps its spool for the next start rather than uploading it here.
    An exception is written to stderr (with the plugin's name) and the other implementations still run.
    """


@hookspec
def audit_after_fork() -> None:
    """Forget what a forked child inherited from its parent.

    Called in the child process right after ``os.fork()`` (gunicorn ``--preload``, uWSGI, multiprocessing's
    ``fork``), on the forking thread, before the child's pipeline starts. File descriptors, sockets, locks and
    threads of the parent belong to the parent: drop them (without closing shared sockets cleanly) and
    reopen lazily. The parent keeps writing what it queued before the fork; the child starts a new stream.
    An exception is written to stderr (with the plugin's name) and the other implementations still run.
    """
