"""A hooks module with a typo in a hook name."""

from activity_audit import hookimpl


@hookimpl
def sinks(records):
    pass
