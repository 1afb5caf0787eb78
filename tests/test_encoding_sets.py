"""Sets in captured values: sorted (equal sets give equal records), and cut to MAX_ITEMS before any work on
the rest, so a huge set costs what ``MAX_ITEMS`` items cost."""

from __future__ import annotations

from activity_audit.encoding import Limits, Snapshotter


class Counted:
    """An item that counts how often it is turned into text (what sorting a set for a record does)."""

    calls = 0

    def __init__(self, number: int) -> None:
        self.number = number

    def __str__(self) -> str:
        Counted.calls += 1
        return f"item {self.number:07d}"

    __repr__ = __str__


def test_a_set_over_the_cap_is_cut_before_it_is_sorted() -> None:
    items = {Counted(number) for number in range(100_000)}
    Counted.calls = 0
    copier = Snapshotter(Limits(max_items=10))

    copied = copier.copy(items)

    assert len(copied) == 11 and copied[-1] == "…[truncated: 100000 items]"
    assert copied[:10] == sorted(copied[:10])
    assert copier.truncated
    assert Counted.calls <= 20  # sorting the 10 kept (and copying them), never the other 99,990


def test_a_set_within_the_cap_is_sorted_whole() -> None:
    assert Snapshotter().copy({"pear", "apple", "fig"}) == ["apple", "fig", "pear"]
    assert Snapshotter().copy(frozenset({3, 1, 2})) == [1, 2, 3]
