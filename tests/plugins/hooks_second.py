"""A project hooks module that marks every test record it redacts."""

from activity_audit import hookimpl

from .trail import mark


@hookimpl
def redact(record):
    mark(record, __name__)
