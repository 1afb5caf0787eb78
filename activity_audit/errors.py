"""Exceptions that cross the boundary between the core and plugins."""

from __future__ import annotations


class PartialDelivery(Exception):
    """Raised by a ``sink`` that stored only ``delivered`` records of a batch.

    The core counts the others as lost for that sink. ``__cause__`` should carry the original error.
    """

    def __init__(self, delivered: int, reason: str) -> None:
        super().__init__(reason)
        self.delivered = delivered
