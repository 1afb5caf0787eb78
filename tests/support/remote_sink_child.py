"""A small Django process for the remote sink tests.

``python -m tests.support.remote_sink_child N MARKER MODE IDS``: settings are ``tests.settings`` with
``ACTIVITY_AUDIT['PLUGINS']`` taken from the JSON in ``AUDIT_TEST_PLUGINS``.
It emits ``N`` records tagged ``MARKER``, waits until the pipeline handed them to every sink (so they are
fsynced in the spools), writes their event_ids to ``IDS`` and prints ``SPOOLED``. Then ``MODE`` ``hold``
sleeps until killed, and ``drain`` waits until every spool is empty and exits through the normal shutdown.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    count, marker, mode, ids_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    import django
    from django.conf import settings

    from tests import settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    values["ACTIVITY_AUDIT"] = {
        **base.ACTIVITY_AUDIT,
        "PLUGINS": json.loads(os.environ["AUDIT_TEST_PLUGINS"]),
    }
    settings.configure(**values)
    django.setup()

    from activity_audit import flush
    from activity_audit.manager import get_plugin_manager
    from tests.support.remote_archive import emit_marked

    ids = emit_marked(count, marker)
    if not flush(30.0):
        sys.exit("the pipeline did not flush")
    with open(ids_path, "w") as out:
        json.dump(ids, out)
        out.flush()
        os.fsync(out.fileno())
    print("SPOOLED", flush=True)
    if mode == "hold":
        while True:
            time.sleep(60)
    spools = [plugin.spool for plugin in get_plugin_manager().get_plugins() if getattr(plugin, "spool", None)]
    deadline = time.monotonic() + 60
    while any(spool.backlog() for spool in spools):
        if time.monotonic() > deadline:
            sys.exit("the spool was not delivered within 60s")
        for spool in spools:
            spool.wake()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
