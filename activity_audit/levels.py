"""The two log levels the package adds, registered by name with :mod:`logging`.

``AUDIT`` (21) marks model changes and authentication events, ``API`` (22) marks incoming and outbound
requests. Both sit just above ``INFO`` so a handler at ``INFO`` keeps them. Registering the names makes
``"level": "API"`` valid inside a ``LOGGING`` dict.
"""

from __future__ import annotations

import logging

AUDIT = 21
API = 22

logging.addLevelName(AUDIT, "AUDIT")
logging.addLevelName(API, "API")
