"""memory_overview: the numbers the viewer's Overview page draws.

Counts of memories by state, of active ones by tier, tag and project; a
day-by-day series of captures and recalls; the most recalled memories. No
other method gives these without paging through every memory from outside.
Read-only, not an MCP tool: an assistant has memory_list and memory_tags.

Recalls per day need each provenance entry's time, which is sealed with the
entry, so every entry of a recalled memory is opened once per call (a
listing-sized cost, paid only when a person opens the page). An entry that
cannot be read is counted in ``unreadable`` and left as it is on disk.
Only recalls are counted, in the chart and in "most recalled" alike: not
the entry a capture's cue makes, nor recalls made in ``exclude_session``
(the viewer passes its own, so browsing does not rank what it browses).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from iai_mcp.core.contract import OverviewParams
from iai_mcp.core.listing import tag_counts
from iai_mcp.errors import CorruptData
from iai_mcp.log import logger
from iai_mcp.store import MemoryStore
from iai_mcp.types import STATES, parse_time, utcnow

_log = logger("iai_mcp.core")

#: Characters of a memory shown beside its recall count.
EXCERPT_CHARS = 160


def _counted(counter: Counter, key: str) -> list[dict[str, Any]]:
    return [{key: name, "count": n} for name, n in sorted(counter.items(), key=lambda i: (-i[1], str(i[0])))]


def _recalls(
    store: MemoryStore, logged: dict[Any, int], first: date, exclude_session: str | None
) -> tuple[Counter, Counter, int]:
    """Recalls per record and per UTC day from ``first`` on, and how many
    entries could not be read (``logged``: each record's entry count)."""
    per_record: Counter = Counter()
    per_day: Counter = Counter()
    unreadable = 0
    for record_id, logged_entries in logged.items():
        try:
            entries = store.provenance_of(record_id)
        except CorruptData as exc:
            unreadable += logged_entries
            _log.warning("overview_provenance_unreadable", record=store.log_name(record_id), error=str(exc))
            continue
        for entry in entries:
            if entry.get("kind") == "capture" or (exclude_session and entry.get("session_id") == exclude_session):
                continue
            per_record[record_id] += 1
            when = parse_time(entry.get("ts"))
            if when is not None and when.date() >= first:
                per_day[when.date()] += 1
    return per_record, per_day, unreadable


def overview(store: MemoryStore, args: OverviewParams) -> dict[str, Any]:
    """``{states, tiers, tags, projects, days, most_recalled, unreadable}``;
    ``days`` has one item per UTC day, oldest first, ending today."""
    rows = [row for row in store.rows() if store.row(row.id) is not None]
    active = [row for row in rows if row.state == "active"]
    today = utcnow().date()
    first = today - timedelta(days=args.days - 1)
    captures = Counter(row.created_at.date() for row in rows if row.created_at.date() >= first)
    logged, _ = store.provenance_counts()
    known = {row.id: row for row in rows}
    counts, recalls, unreadable = _recalls(store, {rid: n for rid, n in logged.items() if rid in known}, first, args.exclude_session)
    top = sorted((rid for rid in counts if known[rid].state == "active"),
                 key=lambda rid: (-counts[rid], str(rid)))[: args.top]
    states = Counter(row.state for row in rows)
    return {
        "states": {state: states.get(state, 0) for state in STATES},
        "tiers": _counted(Counter(row.tier for row in active), "tier"),
        "tags": tag_counts(store)["tags"],
        "projects": _counted(Counter(row.project for row in active), "project"),
        "days": [
            {"day": day.isoformat(), "captures": captures.get(day, 0), "recalls": recalls.get(day, 0)}
            for day in (first + timedelta(days=i) for i in range(args.days))
        ],
        "most_recalled": [
            {"record_id": str(rid), "count": counts[rid], "excerpt": known[rid].literal_surface[:EXCERPT_CHARS]}
            for rid in top
        ],
        "unreadable": unreadable,
    }


OVERVIEW_METHODS: dict[str, Callable[[MemoryStore, Any], dict[str, Any]]] = {
    "memory_overview": overview,
}
