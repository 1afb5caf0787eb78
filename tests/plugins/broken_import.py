"""A hooks module whose import fails."""

import activity_audit_no_such_module  # noqa: F401
