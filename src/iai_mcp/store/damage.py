"""Reading around damage: what can be read is served, what cannot is counted.

One flipped byte in a LanceDB data file's footer makes every read of that
fragment fail (``Unknown Lance storage version``, ``invalid magic``...), and
a streamed scan of the table fails with it; a damaged SQLite page fails every
query that walks it. Neither library says which rows are affected, so both
the records table (by row offset, ``take_offsets``) and the provenance log
(by ``seq``) are read here in ranges: a range that fails is halved until the
failing rows are isolated one by one and counted. Measured on real files
(tests/test_damage.py): a footer flip loses exactly that fragment's rows and
no other; a flip inside a page's values leaves LanceDB reading the row and
the row's AES-GCM tag failing, which the store already reports per row.

Cost: a range that reads costs one call; n damaged rows cost about 2n calls
more (each failing range is split until single rows). Only a store that
failed its normal read pays it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Damage:
    """What a read could not deliver: ``rows`` unreadable rows, and the first
    few errors in the library's own words (for doctor and the log)."""

    rows: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, rows: int, error: BaseException) -> None:
        self.rows += rows
        if len(self.errors) < 5:
            self.errors.append(f"{type(error).__name__}: {error}"[:300])


def read_ranges(
    read: Callable[[int, int], Sequence[T]],
    start: int,
    stop: int,
    damage: Damage,
    chunk: int = 4096,
) -> Iterator[T]:
    """Every item ``read(lo, hi)`` returns for ``[start, stop)`` in chunks; a
    chunk whose read raises is halved until single positions, each failing
    one counted in ``damage``. ``read`` must return the items of exactly that
    range (possibly fewer: gaps are not damage)."""
    pending = [(lo, min(lo + chunk, stop)) for lo in range(start, stop, chunk)]
    pending.reverse()
    while pending:
        lo, hi = pending.pop()
        try:
            items = read(lo, hi)
        except Exception as exc:  # the library reports damage in its own types
            if hi - lo == 1:
                damage.add(1, exc)
                continue
            mid = (lo + hi) // 2
            pending += [(mid, hi), (lo, mid)]  # lower half first: order is kept
            continue
        yield from items
