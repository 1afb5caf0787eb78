"""A plugin that also implements a hook of a future version, marked optional."""

from activity_audit import hookimpl


@hookimpl(optionalhook=True)
def audit_future_hook(record):
    pass
