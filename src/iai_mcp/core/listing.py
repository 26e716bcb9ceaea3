"""Browsing: memory_list (memories by state and metadata, a page at a time)
and memory_tags (the tags in use).

Pages use keyset pagination: the cursor is the sort key of the last item
shown (opaque to callers: base64 of a small JSON object), and the next page
starts strictly after it. Capturing, forgetting or restoring between pages
then never repeats an item nor skips one that was there from the start
(an offset would shift under every insert). ``most_recalled`` also freezes
the provenance log position in the cursor, so the counts the order is built
on do not move under the pages while other recalls run.

A page is one vectorised state mask, then one pass over the matching rows
and a partial sort (``heapq.nsmallest``): O(n) per page, about 60 ms at 100k
memories, which a listing can afford and recall could not.
"""
from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from iai_mcp.core.contract import ListParams
from iai_mcp.core.filters import filter_of
from iai_mcp.core.results import ListedMemory, memory_dict
from iai_mcp.errors import InvalidInput
from iai_mcp.store import STATE_CODES, MemoryStore
from iai_mcp.types import MemoryRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATES = {"active": ("active",), "hidden": ("hidden",), "superseded": ("superseded",),
           "all": ("active", "hidden", "superseded")}
_KEY_LENGTH = {"newest": 2, "oldest": 2, "most_recalled": 3}
SortKey = tuple[Any, ...]


def _us(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def sort_key(order: str, row: MemoryRow, counts: dict[Any, int]) -> SortKey:
    """Ascending key of ``row`` in ``order``; the record id breaks ties."""
    said, rid = _us(row.said_at), str(row.id)
    if order == "oldest":
        return (said, rid)
    if order == "newest":
        return (-said, rid)
    return (-counts.get(row.id, 0), -said, rid)


def encode_cursor(order: str, key: SortKey, as_of: int | None) -> str:
    raw = json.dumps({"o": order, "k": list(key), "s": as_of}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[SortKey, int | None]:
    """The key and log position a cursor carries; InvalidInput if it is not
    one memory_list gave for this ``order``."""
    problem = InvalidInput(
        f"memory_list: 'cursor' is not a next_cursor that memory_list returned for order {order!r}; "
        "start again without a cursor"
    )
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise problem from None
    if not isinstance(data, dict) or data.get("o") != order:
        raise problem
    key, as_of = data.get("k"), data.get("s")
    if not isinstance(key, list) or len(key) != _KEY_LENGTH[order] or not isinstance(key[-1], str):
        raise problem
    if not all(isinstance(part, int) and not isinstance(part, bool) for part in key[:-1]):
        raise problem
    if as_of is not None and (not isinstance(as_of, int) or isinstance(as_of, bool) or as_of < 0):
        raise problem
    return tuple(key), as_of


def list_memories(store: MemoryStore, args: ListParams) -> dict[str, Any]:
    """One page of ``results.ListPage``: ``items`` and ``next_cursor`` (null
    after the last page)."""
    after, as_of = decode_cursor(args.cursor, args.order) if args.cursor else (None, None)
    counts: dict[Any, int] = {}
    if args.order == "most_recalled":
        counts, as_of = store.provenance_counts(as_of)
    wanted = _STATES[args.state]
    rows = store.rows()
    states = store.states()
    n = min(len(rows), len(states))
    codes = [STATE_CODES[name] for name in wanted]
    keep = filter_of(args)
    found: list[tuple[SortKey, MemoryRow]] = []
    for slot in np.flatnonzero(np.isin(states[:n], codes)):
        row = rows[slot]
        # Checked on the row too: a state change may land after the mask.
        if row.state not in wanted or store.row(row.id) is None or not keep.passes(row):
            continue
        key = sort_key(args.order, row, counts)
        if after is None or key > after:
            found.append((key, row))
    page = heapq.nsmallest(args.limit + 1, found, key=lambda item: item[0])
    more = len(page) > args.limit
    page = page[: args.limit]
    return {
        "items": [memory_dict(row, ListedMemory) for _, row in page],
        "next_cursor": encode_cursor(args.order, page[-1][0], as_of) if more else None,
    }


def tag_counts(store: MemoryStore) -> dict[str, Any]:
    """``results.TagList``: every tag on an active memory with how many carry
    it, most used first."""
    rows = store.rows()
    states = store.states()
    n = min(len(rows), len(states))
    counts: Counter[str] = Counter()
    for slot in np.flatnonzero(states[:n] == STATE_CODES["active"]):
        row = rows[slot]
        if row.state == "active":
            counts.update(set(row.tags))
    return {"tags": [{"tag": tag, "count": count}
                     for tag, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]}
