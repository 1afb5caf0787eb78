"""A plugin of the test suite: enriches every CRUD record and vetoes those of one model."""

from activity_audit import hookimpl

VETOED_MODEL = "testapp.Chapter"


class TenantPlugin:
    def __init__(self, tenant):
        self.tenant = tenant
        self.seen = []

    @hookimpl
    def audit_crud_event(self, record):
        self.seen.append(record["event_type"])
        if record.get("model_label") == VETOED_MODEL:
            return False
        record["extra"]["tenant"] = self.tenant
        return None
