"""What the methods return: each result's shape, declared once, and the one
function that turns a memory into the public dict a shape describes.

The shapes are ``TypedDict``s: the MCP tools return them as their result
types (FastMCP derives the output schemas from them), and ``memory_dict``
fills a memory shape from a row, key by key in declaration order, so a field
added to a shape is a field every result of that shape carries.

Public names (``record_id``, ``literal_surface``, ...) are part of the
dispatch contract and do not change; an exported record spells two of them
as its file format always has (``id``, ``text``).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from iai_mcp.types import MemoryRow, State

CaptureStatus = Literal["inserted", "reinforced", "skipped"]
#: Why a memory is in a session pack.
Why = Literal["pinned", "recalled", "reinforced", "captured"]


class RelatedMemory(TypedDict):
    """An active memory close to a new capture: a candidate for ``supersedes``."""

    record_id: str
    score: float
    excerpt: str


class CaptureResult(TypedDict):
    status: CaptureStatus
    record_id: str
    reason: str
    redacted: list[str]
    related: list[RelatedMemory]


class MemorySummary(TypedDict):
    """What every result says about a memory."""

    record_id: str
    literal_surface: str
    tier: str
    tags: list[str]
    session_id: str | None
    role: str | None
    ts: str
    state: State
    valid_from: str
    valid_to: str | None
    superseded_by: str | None
    #: The project it was said in (a git root or directory), if known.
    project: str | None


class ExcerptSpan(TypedDict):
    """Where a returned excerpt sits in the memory: ``literal_surface`` is
    ``full_text[start:end]`` (character offsets) of a text ``length`` long;
    ``memory_get`` returns the whole."""

    start: int
    end: int
    length: int


class RecallHit(MemorySummary):
    score: float
    reason: str
    #: Null when ``literal_surface`` is the whole memory; else the memory was
    #: longer than the budget left and ``literal_surface`` is this window of it.
    excerpt: ExcerptSpan | None


class AntiHit(TypedDict):
    """A superseded memory that matched the cue: what was corrected, and by what."""

    record_id: str
    literal_surface: str
    superseded_by: str | None
    valid_to: str | None
    score: float


class RecallResult(TypedDict):
    hits: list[RecallHit]
    anti_hits: list[AntiHit]
    budget_used: int
    #: How many of the k best-ranked memories were left out for scoring below min_score.
    below_floor: int
    #: Set when the floor left out every hit: nothing stored seems relevant to the cue.
    note: str | None


class Memory(MemorySummary):
    pinned: bool
    language: str
    created_at: str
    updated_at: str
    reinforcements: int
    provenance: list[dict[str, Any]]
    # Every lifecycle action on it ({ts, action, session_id, detail}); memory_get only.
    history: list[dict[str, Any]]
    #: Provenance entries that could not be read (damaged), left out of ``provenance``.
    provenance_damaged: int
    #: A hidden memory's end of the undo window (restorable until then); None otherwise.
    undo_until: str | None


class PackedMemory(MemorySummary):
    pinned: bool
    why: Why
    at: str
    #: As in ``RecallHit``: set when only a window of the memory fit the pack.
    excerpt: ExcerptSpan | None


class SessionPack(TypedDict):
    text: str
    budget_used: int
    memories: list[PackedMemory]


#: The export format's names for two fields of a memory.
EXPORT_NAMES = {"record_id": "id", "literal_surface": "text"}

_EXPORTED: dict[str, Any] = {
    "id": str, "text": str, "tier": str, "tags": list[str], "session_id": str | None,
    "role": str | None, "ts": str, "pinned": bool, "language": str, "created_at": str,
    "updated_at": str, "reinforcements": int, "provenance": list[dict[str, Any]],
    # issue 9: the lifecycle travels with the record.
    "state": str, "valid_from": str, "valid_to": str | None, "superseded_by": str | None,
    "hidden_at": str | None, "undo_until": str | None, "history": list[dict[str, Any]],
    # issue 10: the project it was said in.
    "project": str | None,
}
# An export line: the fields above in the file's order, then every other field
# of a ``Memory`` (one added there later is exported too, and imported as far
# as ``contract.ImportRecord`` takes it: a test pins that it takes them all).
# ``provenance_damaged`` is not a field but a count of one read (the export
# page reports its own total).
NOT_EXPORTED = {"provenance_damaged"}
ExportedRecord = TypedDict("ExportedRecord", {  # type: ignore[misc]
    **_EXPORTED,
    **{name: kind for name, kind in Memory.__annotations__.items()
       if EXPORT_NAMES.get(name, name) not in _EXPORTED and name not in NOT_EXPORTED},
})


# ------------------------------------------- forgetting and correcting (F)

ForgetMode = Literal["hide", "purge"]


class ForgetResult(TypedDict):
    mode: ForgetMode
    #: Memories the selectors matched (hidden ones too, when purging).
    matched: int
    #: Record ids this call hid or purged (would, with dry_run).
    forgotten: list[str]
    #: Until when a hidden memory can be restored (ISO-8601); null for purge.
    undo_until: str | None


class RestoreResult(TypedDict):
    restored: list[str]


class ListedMemory(MemorySummary):
    """A memory as memory_list shows it."""

    pinned: bool
    language: str
    created_at: str
    updated_at: str
    reinforcements: int
    undo_until: str | None


class ListPage(TypedDict):
    items: list[ListedMemory]
    next_cursor: str | None


class TagCount(TypedDict):
    tag: str
    count: int


class TagList(TypedDict):
    tags: list[TagCount]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


#: How each public field of a memory is read from its row.
_FIELDS: dict[str, Callable[[MemoryRow], Any]] = {
    "record_id": lambda row: str(row.id),
    "literal_surface": lambda row: row.literal_surface,
    "tier": lambda row: row.tier,
    "tags": lambda row: list(row.tags),
    "session_id": lambda row: row.session_id,
    "role": lambda row: row.role,
    "ts": lambda row: row.said_at.isoformat(),
    "pinned": lambda row: row.pinned,
    "language": lambda row: row.language,
    "created_at": lambda row: row.created_at.isoformat(),
    "updated_at": lambda row: row.updated_at.isoformat(),
    "reinforcements": lambda row: row.reinforcements,
    # issue 9: where the memory is in its life.
    "state": lambda row: row.state,
    "valid_from": lambda row: row.valid_from.isoformat(),
    "valid_to": lambda row: _iso(row.valid_to),
    "superseded_by": lambda row: None if row.superseded_by is None else str(row.superseded_by),
    "hidden_at": lambda row: _iso(row.hidden_at),
    "undo_until": lambda row: _iso(row.undo_until),
    "history": lambda row: [dict(item) for item in row.history],
    "project": lambda row: row.project,
}
_FIELDS["id"], _FIELDS["text"] = _FIELDS["record_id"], _FIELDS["literal_surface"]


def memory_dict(row: MemoryRow, shape: type = MemorySummary, **known: Any) -> dict[str, Any]:
    """``row`` as the public dict ``shape`` declares, in its key order.

    ``known`` gives the fields a row does not hold (a score, why it was
    packed, its provenance); every other field is read from the row.
    """
    return {
        name: known[name] if name in known else _FIELDS[name](row)
        for name in shape.__annotations__
    }


def memory_in_full(store: Any, row: MemoryRow) -> dict[str, Any]:
    """``row`` as ``Memory`` (memory_get, memory_update) with its provenance:
    an entry that cannot be read is left out and counted, never a failed call."""
    provenance, damaged = store.read_provenance(row.id)
    return memory_dict(row, Memory, provenance=provenance, provenance_damaged=damaged)
