"""The one metadata filter that recall, memory_list and memory_forget apply.

Each of them selects memories by tier, conversation, tags and the time the
words were said; written once here so the three agree on every edge: all of
``tags`` must be carried, at least one of ``tags_any``, and ``since`` and
``until`` both include their bound (a memory said exactly at ``until`` is
in). What a memory's state lets through (hidden, superseded, purged) is not
a filter: each caller masks states with ``store.states()`` first.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from iai_mcp.core.redact import redact_label
from iai_mcp.types import MemoryRow, parse_time


def _time(value: datetime | str | None) -> datetime | None:
    return value if isinstance(value, datetime) or value is None else parse_time(value)


@dataclass(frozen=True)
class RowFilter:
    """Criteria combined with AND; one left at None (or empty) lets every row through."""

    tier: str | None = None
    session_id: str | None = None
    pinned: bool | None = None
    #: Every one of these tags.
    tags: frozenset[str] = frozenset()
    #: At least one of these tags.
    tags_any: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    project: str | None = None

    def __bool__(self) -> bool:
        """Whether it can reject anything (recall then looks past its first candidates)."""
        return any(v is not None for v in (self.tier, self.session_id, self.pinned, self.since, self.until,
                                           self.project)) or bool(
            self.tags or self.tags_any)

    def passes(self, row: MemoryRow) -> bool:
        if self.tier is not None and row.tier != self.tier:
            return False
        if self.session_id is not None and row.session_id != self.session_id:
            return False
        if self.pinned is not None and row.pinned != self.pinned:
            return False
        if self.project is not None and row.project != self.project:
            return False
        if self.tags and not self.tags.issubset(row.tags):
            return False
        if self.tags_any and self.tags_any.isdisjoint(row.tags):
            return False
        if self.since is not None or self.until is not None:
            said = row.said_at
            if (self.since is not None and said < self.since) or (self.until is not None and said > self.until):
                return False
        return True


def row_filter(
    *, tier: str | None = None, session_id: str | None = None, pinned: bool | None = None,
    tags: Iterable[str] | None = None, tags_any: Iterable[str] | None = None,
    since: datetime | str | None = None, until: datetime | str | None = None, project: str | None = None,
) -> RowFilter:
    """A ``RowFilter``; ``since``/``until`` as datetimes or ISO-8601 text (the
    contract has checked the text already)."""
    # Stored tags and session ids are redacted (core.capture): a filter
    # naming one as it was said is mapped the same way, so it still matches.
    return RowFilter(tier, redact_label(session_id), pinned, frozenset(map(redact_label, tags or ())),
                     frozenset(map(redact_label, tags_any or ())), _time(since), _time(until), project)


def filter_of(params: Any) -> RowFilter:
    """The filter a method's parameters ask for: whichever of the fields
    above ``params`` has (a recall query, ``ListParams``, ``ForgetParams``)."""
    return row_filter(**{name: getattr(params, name) for name in
                         ("tier", "session_id", "pinned", "tags", "tags_any", "since", "until", "project")
                         if hasattr(params, name)})
