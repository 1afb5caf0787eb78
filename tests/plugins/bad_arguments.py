"""A hooks module whose implementation asks for an argument the hook does not have."""

from activity_audit import hookimpl


@hookimpl
def redact(record, request):
    pass
