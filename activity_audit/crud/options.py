"""The CRUD settings read on every change, copied out of ``AuditSettings`` at configure time."""

from __future__ import annotations

from dataclasses import dataclass

from ..conf import AuditSettings


@dataclass(frozen=True)
class CrudOptions:
    keep_empty_updates: bool = False
    bulk_detail: str = "rows"  # "rows" | "pks" | "count" (see conf.BULK_DETAIL_CHOICES)
    chunk_size: int = 500

    @property
    def wants_pks(self) -> bool:
        return self.bulk_detail != "count"

    @property
    def wants_rows(self) -> bool:
        return self.bulk_detail == "rows"


current = CrudOptions()


def configure(settings: AuditSettings) -> None:
    global current
    current = CrudOptions(
        keep_empty_updates=settings.KEEP_EMPTY_UPDATES,
        bulk_detail=settings.BULK_DETAIL,
        chunk_size=settings.BULK_CHUNK_SIZE,
    )
