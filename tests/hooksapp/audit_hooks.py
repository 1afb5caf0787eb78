"""Found because the app is installed: no setting names it."""

from activity_audit import hookimpl
from tests.plugins.trail import mark


@hookimpl
def redact(record):
    mark(record, __name__)
