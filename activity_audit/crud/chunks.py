"""Split long per-row lists over several records, so that no record outgrows ``MAX_RECORD_BYTES``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


def parts(items: Sequence[_T], size: int) -> Iterator[tuple[Sequence[_T], dict[str, int] | None]]:
    """``(slice, part)`` pairs; ``part`` is ``{"index": i, "of": n}`` (1-based), None for a single record.

    An empty ``items`` still gives one (empty) part, so every operation writes at least one record.
    """
    total = max(1, -(-len(items) // size))
    if total == 1:
        yield items, None
        return
    for index in range(total):
        yield items[index * size : (index + 1) * size], {"index": index + 1, "of": total}


def with_part(fields: dict[str, Any], part: dict[str, int] | None) -> dict[str, Any]:
    if part is not None:
        fields["part"] = part
    return fields


def sorted_pks(pks: Iterable[Any]) -> list[Any]:
    """``pks`` in ascending order (mixed types in a stable order)."""
    items = list(pks)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda pk: (type(pk).__name__, str(pk)))
