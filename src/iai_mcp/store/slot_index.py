"""Where a record's slot is, by a key its row holds (its id, its text): a
hash table of slot numbers alone, in one ``array('i')``.

The two dicts this replaces (``Slots.index_of``: id -> slot, and
``by_text``: text -> slot) took 7.7 and 6.3 MB at 100k records, with an
int object per slot besides (``python -m bench.row_footprint``): a dict
keeps a hash, a key and a value per entry. The rows already hold every key,
so a table only needs the slot: 4 bytes an entry, 1 MB for each table at
100k. A lookup hashes the key, walks the table and compares the key of each
slot it meets, read from the row: 0.4-0.5 us against a dict's 0.1-0.15 for
100k ids, and entering a slot ~0.8 us (two tables: ~0.15 s of a 100k open,
which the tag sets shared without a lookup per tag, ``store.sharing``, won
back).

Open addressing with CPython's own probe sequence (the perturbed one, so
keys whose hashes differ only in high bits do not pile up); a removed entry
leaves a marker that lookups walk past and inserts reuse, and the table is
rebuilt when entries and markers fill two thirds of it.

Readers may look up without the store's lock (the provenance queue asks
whether a record exists): every change is one store into the array, and a
rebuild fills a new array before it replaces the old one, so a reader sees
the table before or after a change, never half of one.
"""
from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Hashable, Sequence
from typing import Any

#: Markers in the table: a position never used, and one whose entry was removed.
EMPTY = -1
REMOVED = -2
_MIN = 8
#: Hashes are masked to non-negative integers: the probe shifts them right.
_HASH_BITS = sys.maxsize
_PERTURB_SHIFT = 5


def _capacity(entries: int) -> int:
    """The smallest power of two that holds ``entries`` at most half full."""
    size = _MIN
    while size < 2 * entries:
        size *= 2
    return size


class SlotIndex:
    """``key -> slot`` for a field of the slots' rows: the key of the row in
    slot ``s`` is ``getattr(rows[s], field)`` (an entry is only ever set for a
    slot whose row holds the key). Behaves as the dict it replaces for the
    operations the slots use."""

    __slots__ = ("_rows", "_field", "_table", "_count", "_filled")

    def __init__(self, rows: Sequence[Any], field: str, expected: int = 0) -> None:
        self._rows = rows
        self._field = field
        self._table = array("i", [EMPTY]) * _capacity(expected)
        self._count = 0   # entries
        self._filled = 0  # entries and REMOVED markers

    def _position(self, table: array[int], key: Hashable) -> int:
        """Where ``key``'s entry is in ``table``; when it has none,
        ``~position`` of where an insert of it goes (so, negative)."""
        # Locals throughout: this loop is every lookup's cost.
        rows, field, mask = self._rows, self._field, len(table) - 1
        perturb = hash(key) & _HASH_BITS
        pos = perturb & mask
        free = -1
        while True:
            slot = table[pos]
            if slot == EMPTY:
                return ~(pos if free < 0 else free)
            if slot == REMOVED:
                if free < 0:
                    free = pos
            else:
                # Identity first: the slots look rows up by the row's own id and text.
                stored = getattr(rows[slot], field)
                if stored is key or stored == key:
                    return pos
            perturb >>= _PERTURB_SHIFT
            pos = (pos * 5 + perturb + 1) & mask

    def get(self, key: Hashable, default: Any = None) -> Any:
        table = self._table  # once: a rebuild may replace it meanwhile
        pos = self._position(table, key)
        return default if pos < 0 else table[pos]

    def __getitem__(self, key: Hashable) -> int:
        slot = self.get(key)
        if slot is None:
            raise KeyError(key)
        return int(slot)

    def __contains__(self, key: object) -> bool:
        return self._position(self._table, key) >= 0  # type: ignore[arg-type]

    def __setitem__(self, key: Hashable, slot: int) -> None:
        self._put(key, slot, None)

    def enter(self, start: int, keep: Callable[[int], bool] | None = None) -> None:
        """Enter the slots from ``start`` to the end of the rows, in order:
        each takes its key's entry, unless the slot the entry names is one
        ``keep`` says stays. One pass for the whole open."""
        rows, field = self._rows, self._field
        stop = len(rows)
        if (self._filled + stop - start) * 3 > len(self._table) * 2:
            self._rebuild(self._count + stop - start)
        for slot in range(start, stop):
            self._put(getattr(rows[slot], field), slot, keep)

    def _put(self, key: Hashable, slot: int, keep: Callable[[int], bool] | None) -> None:
        table = self._table
        pos = self._position(table, key)
        if pos >= 0:
            if keep is None or not keep(table[pos]):
                table[pos] = slot
            return
        pos = ~pos
        if table[pos] == EMPTY:
            if (self._filled + 1) * 3 > len(table) * 2:
                self._rebuild(self._count + 1)
                table = self._table
                pos = ~self._position(table, key)
            self._filled += 1
        table[pos] = slot
        self._count += 1

    def setdefault(self, key: Hashable, slot: int) -> int:
        found = self.get(key)
        if found is None:
            self[key] = slot
            return slot
        return int(found)

    def pop(self, key: Hashable, default: Any = None) -> Any:
        table = self._table
        pos = self._position(table, key)
        if pos < 0:
            return default
        slot = table[pos]
        table[pos] = REMOVED
        self._count -= 1
        return slot

    def __delitem__(self, key: Hashable) -> None:
        if self.pop(key) is None:
            raise KeyError(key)

    def __len__(self) -> int:
        return self._count

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + sys.getsizeof(self._table)

    def _rebuild(self, entries: int) -> None:
        """A new table for ``entries``, filled with the current entries (the
        markers dropped), then swapped in."""
        fresh = array("i", [EMPTY]) * _capacity(entries)
        rows, field = self._rows, self._field
        for slot in self._table:
            if slot >= 0:
                fresh[_free_position(fresh, hash(getattr(rows[slot], field)))] = slot
        self._filled = self._count
        self._table = fresh


def _free_position(table: array[int], hashed: int) -> int:
    """The first position on ``hashed``'s probe sequence without an entry."""
    mask = len(table) - 1
    perturb = hashed & _HASH_BITS
    pos = perturb & mask
    while table[pos] >= 0:
        perturb >>= _PERTURB_SHIFT
        pos = (pos * 5 + perturb + 1) & mask
    return pos
