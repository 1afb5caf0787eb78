"""The marker plugins decorate their hook functions with: ``from activity_audit import hookimpl``."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("activity_audit")
