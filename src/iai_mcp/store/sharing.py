"""Equal values shared between the rows an open store holds in memory.

Each decoded row used to carry its own copy of every value: its own
``"episodic"``, ``"en"``, ``"user"``, session id, tag list, empty history,
``0.0`` floats and, for a batch captured at one instant, three equal
datetimes. On the 100k-record bench store that was about 60 MB of the
rows' 138 MB (``python -m bench.rows_memory``). ``SharedValues.share``
swaps each such field for one object per distinct value as a row enters
the slots, so every way a row is built (decoded at open, captured,
rewritten by the lifecycle, imported) goes through it.

Sharing is only safe for values nobody changes in place. Strings, floats
and datetimes cannot be; a row's ``tags`` and ``history`` are lists, so a
stored row gets them as ``ReadOnlyList``: still a ``list`` (equal to,
serialised and copied like one), but one whose in-place changes raise
``TypeError`` instead of reaching every other row sharing it. Every writer
in the code builds a new list (``store.update``, ``dataclasses.replace``).

Each table is bounded (it starts afresh when full), so a field whose values
are all distinct costs a bounded table, not one entry per record. The
tables never hold a record's text or id (``by_text`` and ``index_of`` drop
a purged record's); a tag, session id or time of a purged record may stay
in one until the store closes, in memory only.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, NoReturn, SupportsIndex

from iai_mcp.types import MemoryRow

#: Distinct values a table keeps before it starts afresh: far above the few
#: tiers, roles, languages and tag sets, and above a year of session ids...
_WINDOW = 1 << 16
#: ...but datetimes and floats are mostly distinct: what repeats is a batch
#: captured at one instant, whose rows sit next to each other.
_RECENT = 1 << 12
#: String fields with few distinct values (tiers, roles, sessions, projects).
_STRING_FIELDS = ("tier", "aaak_index", "community_id", "language", "session_id", "role", "project")
_FLOAT_FIELDS = ("centrality", "stability", "difficulty")
_DATETIME_FIELDS = ("created_at", "updated_at", "event_time", "last_reviewed", "hidden_at", "undo_until", "valid_to")
#: History item values that repeat across records; ``ts`` repeats only
#: within a batch (``detail`` hardly ever).
_HISTORY_STRINGS = frozenset({"action", "session_id"})
_UTC = timezone.utc


class ReadOnlyList(list):  # type: ignore[type-arg]
    """A list that refuses in-place changes: rows share these (see the module
    docstring). Copies (``list(x)``, ``copy.copy``, slicing, ``x + y``) are
    plain, mutable lists."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "a stored row's tags and history are shared between rows and read-only: "
            "build a new list (dataclasses.replace, MemoryStore.update)"
        )

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # The default rebuilds a list subclass by appending to it, which is refused.
        return (list, (list(self),))


EMPTY: ReadOnlyList = ReadOnlyList()


def _exact_float(value: object) -> bool:
    """Whether ``value`` is a float a table can find exactly: -0.0 == 0.0
    would swap signs, and NaN != NaN is never found."""
    return type(value) is float and not math.isnan(value) and (value != 0.0 or math.copysign(1.0, value) > 0)


class SharedValues:
    """One object per distinct value for the fields of the rows of one open store."""

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._floats: dict[float, float] = {}
        self._datetimes: dict[datetime, datetime] = {}
        self._times: dict[str, str] = {}  # history ``ts``, apart: mostly distinct
        self._tag_lists: dict[tuple[str, ...], ReadOnlyList] = {}

    def share(self, row: MemoryRow) -> MemoryRow:
        """``row`` with its fields swapped, in place, for equal shared values."""
        # About 3 us a row, 0.3 s of a 100k open: one dict lookup per value.
        strings, floats, datetimes = self._strings, self._floats, self._datetimes
        for name in _STRING_FIELDS:
            value = getattr(row, name)
            if type(value) is str:
                setattr(row, name, strings.setdefault(value, value))
        for name in _FLOAT_FIELDS:
            value = getattr(row, name)
            if _exact_float(value):
                setattr(row, name, floats.setdefault(value, value))
        for name in _DATETIME_FIELDS:
            value = getattr(row, name)
            # Only UTC (what utcnow and parsing "+00:00" give): equality alone
            # would swap 12:00+00:00 for 13:00+01:00, and it ignores ``fold``.
            if value is not None and value.tzinfo is _UTC and type(value) is datetime and not value.fold:
                setattr(row, name, datetimes.setdefault(value, value))
        row.tags = self.tags(row.tags)
        row.history = self.history(row.history)
        for table, window in ((strings, _WINDOW), (floats, _RECENT), (datetimes, _RECENT), (self._times, _RECENT)):
            if len(table) > window:
                table.clear()
        return row

    def string(self, value: str) -> str:
        return self._strings.setdefault(value, value)

    def tags(self, tags: Iterable[str]) -> ReadOnlyList:
        if type(tags) is ReadOnlyList:
            return tags  # shared already: a row rewritten with other changes
        key = tuple(tags)
        if not key:
            return EMPTY
        # A tag set seen before (most rows' case) needs no per-tag lookup:
        # the shared list already holds shared strings.
        shared = self._tag_lists.get(key)
        if shared is not None:
            return shared
        if len(self._tag_lists) >= _WINDOW:
            self._tag_lists.clear()
        key = tuple(self.string(tag) if type(tag) is str else tag for tag in key)
        shared = self._tag_lists[key] = ReadOnlyList(key)
        return shared

    def history(self, history: Iterable[dict[str, Any]]) -> ReadOnlyList:
        if type(history) is ReadOnlyList:
            return history
        items = [self._history_item(item) if type(item) is dict else item for item in history]
        return ReadOnlyList(items) if items else EMPTY

    def _history_item(self, item: dict[str, Any]) -> dict[str, Any]:
        # A new dict: the caller's stays as it was.
        shared = {self.string(k) if type(k) is str else k:
                  self.string(v) if k in _HISTORY_STRINGS and type(v) is str else v
                  for k, v in item.items()}
        ts = shared.get("ts")
        if type(ts) is str:
            shared["ts"] = self._times.setdefault(ts, ts)
        return shared
