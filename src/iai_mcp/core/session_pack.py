"""The memory pack a new session starts with.

Pinned memories come first, then the ones touched most recently: recalled
(the newest provenance entry), reinforced (said again) or captured. Texts
are verbatim; whole memories are packed into a token budget and one that
does not fit is left out, except a pinned one: it is cut to an excerpt of
what is left (its opening sentences, marked ``[…]``), so a small budget
still carries the user's standing preferences. The pack is rendered here, so
the hook that prints it and the tool that returns it show the same text, and
the budget counts exactly what is shown.

Building the pack reads provenance and writes none: delivering a memory in
a pack is not a use of it (it would otherwise keep itself "recalled").

Only active memories are packed: a hidden (forgotten) or superseded one is
left out from the moment its state changes (the store's state array is read
at every build; nothing is cached).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from iai_mcp.core.excerpt import Excerpt, excerpt
from iai_mcp.core.recall import CHARS_PER_TOKEN, estimate_tokens
from iai_mcp.core.results import Why
from iai_mcp.store import STATE_CODES, MemoryStore
from iai_mcp.types import MemoryRow, parse_time

HEADER = (
    "Memories from earlier sessions (iai-mcp, verbatim; pinned first, then most recently "
    "used). Call memory_recall for anything else."
)

#: No rendered item costs less than this, so a fuller pack stops scanning.
_MIN_ITEM_TOKENS = 6
#: A pinned memory is cut to fewer characters than this only by leaving it out.
_MIN_EXCERPT_CHARS = 16
#: Ends an excerpt's line in the rendered pack.
EXCERPT_MARK = " […]"


@dataclass(frozen=True)
class PackItem:
    row: MemoryRow
    why: Why
    at: datetime
    #: Set when only this window of the text fit the pack.
    excerpt: Excerpt | None = None


@dataclass(frozen=True)
class Pack:
    items: list[PackItem]
    text: str
    tokens: int


def candidates(store: MemoryStore, exclude_session: str | None, recalled_limit: int) -> list[PackItem]:
    """Every eligible memory in pack order: pinned (newest said first), then by last use."""
    last_recall: dict[UUID, datetime] = {}
    for record_id, entry in store.latest_provenance(recalled_limit):
        # A capture's cue is logged as provenance too; that is not a use.
        ts = parse_time(entry.get("ts")) if entry.get("kind") != "capture" else None
        if ts is not None:
            last_recall[record_id] = ts
    pinned: list[PackItem] = []
    others: list[PackItem] = []
    rows = store.rows()
    states = store.states()
    for row, code in zip(rows, states):
        if code != STATE_CODES["active"] or row.state != "active":
            continue  # forgotten, superseded or purged
        if exclude_session is not None and row.session_id == exclude_session:
            continue  # already in the session's own context
        if row.pinned:
            pinned.append(PackItem(row, "pinned", row.said_at))
            continue
        why: Why = "reinforced" if row.reinforcements else "captured"
        at = row.updated_at
        recalled_at = last_recall.get(row.id)
        if recalled_at is not None and recalled_at >= at:
            why, at = "recalled", recalled_at
        others.append(PackItem(row, why, at))
    pinned.sort(key=lambda item: item.at, reverse=True)
    others.sort(key=lambda item: item.at, reverse=True)
    return pinned + others


def render_item(item: PackItem) -> str:
    role = f" {item.row.role}" if item.row.role else ""
    said = item.row.said_at.strftime("%Y-%m-%d")
    # Continuation lines are indented so a multi-line memory stays one bullet.
    text = item.row.literal_surface if item.excerpt is None else item.excerpt.text + EXCERPT_MARK
    body = text.replace("\n", "\n  ")
    return f"- [{item.why}, said {said}{role}] {body}"


def item_fields(item: PackItem) -> dict[str, Any]:
    """What a packed item adds to its memory's summary (``results.PackedMemory``)."""
    fields: dict[str, Any] = {"why": item.why, "at": item.at.isoformat(), "excerpt": None}
    if item.excerpt is not None:
        part = item.excerpt
        fields["literal_surface"] = part.text
        fields["excerpt"] = {"start": part.start, "end": part.end, "length": part.length}
    return fields


def _cut(item: PackItem, room_tokens: int) -> tuple[PackItem, str] | None:
    """``item`` as an excerpt whose rendered line fits ``room_tokens``, or None."""
    empty = render_item(replace(item, excerpt=Excerpt(0, 0, 0, "")))
    chars = room_tokens * CHARS_PER_TOKEN - len(empty) - 1  # the line's "\n"
    while chars >= _MIN_EXCERPT_CHARS:
        cut = replace(item, excerpt=excerpt(item.row.literal_surface, "", chars))
        line = render_item(cut)
        over = len(line) + 1 - room_tokens * CHARS_PER_TOKEN
        if over <= 0:
            return cut, line
        chars -= over  # indented line breaks made it longer than its text
    return None


#: Shares of the budget when the session names its project: pinned memories
#: (the project's own first), the project's other memories, then recently
#: used ones from anywhere. What a part leaves unused passes to the next, and
#: so do the pinned memories it had no room for, tried first there; the first
#: pinned memory may always take the whole budget (pinned come first).
PROJECT_SHARES = (0.25, 0.5)


def _parts(everything: list[PackItem], project: str | None, budget_tokens: int) -> list[tuple[list[PackItem], int]]:
    """The pack's parts in order, each with the tokens it may add."""
    if project is None:
        return [(everything, budget_tokens)]
    pinned = sorted((i for i in everything if i.why == "pinned"), key=lambda i: i.row.project != project)
    rest = [i for i in everything if i.why != "pinned"]
    mine = [i for i in rest if i.row.project == project]
    others = [i for i in rest if i.row.project != project]
    return [(pinned, int(budget_tokens * PROJECT_SHARES[0])), (mine, int(budget_tokens * PROJECT_SHARES[1])),
            (others, budget_tokens)]


def build_pack(store: MemoryStore, budget_tokens: int, exclude_session: str | None = None,
               project: str | None = None) -> Pack:
    """Pack candidates in order into ``budget_tokens`` (estimated as in recall);
    with ``project``, in the parts and shares of ``PROJECT_SHARES``."""
    used = estimate_tokens(HEADER + "\n")
    items: list[PackItem] = []
    lines = [HEADER]
    everything = candidates(store, exclude_session, recalled_limit=max(100, budget_tokens))
    parts = _parts(everything, project, budget_tokens)
    # Pinned memories a part had no room for go first into the next part,
    # and the part stops there, passing on its room and the memories it did
    # not try: left in their quarter, pinned ones were dropped while later
    # parts filled the budget with less important ones.
    carried: list[PackItem] = []
    for n, (part, share) in enumerate(parts):
        last = n == len(parts) - 1
        limit = min(budget_tokens, used + share)
        queue, deferred, untried = [*carried, *part], [], []
        for at, item in enumerate(queue):
            pinned = item.why == "pinned"
            if deferred and not pinned:
                untried = queue[at:]
                break
            room = budget_tokens if not items and pinned else limit
            if room - used < _MIN_ITEM_TOKENS:
                if pinned:
                    deferred.append(item)
                    continue
                break
            current = store.row(item.row.id)
            if current is None or current.state != "active":
                continue  # forgotten, superseded or purged since the candidates were read
            line = render_item(item)
            cost = estimate_tokens(line + "\n")
            if used + cost > room:
                if pinned and not last and used + cost <= budget_tokens:
                    deferred.append(item)  # whole in a later part rather than cut here
                    continue
                cut = _cut(item, room - used) if pinned else None
                if cut is None:
                    continue  # too long for what is left; a shorter one may still fit
                item, line = cut
                cost = estimate_tokens(line + "\n")
            items.append(item)
            lines.append(line)
            used += cost
        carried = deferred + untried
    if not items:
        return Pack([], "", 0)
    # The sum of per-line estimates bounds the estimate of the joined text.
    return Pack(items, "\n".join(lines) + "\n", used)
