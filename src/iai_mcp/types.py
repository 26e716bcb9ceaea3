"""The data model: what a memory is, and what a provenance entry is.

Field names follow the iai-mcp data model so that existing tooling fits.
Everything here is plain data with validation; nothing touches disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple, get_args
from uuid import UUID, uuid4

#: Width of every embedding vector (all-MiniLM-L6-v2).
EMBED_DIM = 384

#: The memory tiers a record can live in. Declared once, as a ``Literal`` so
#: that type checkers, the method contract (``core.contract``), the MCP tool
#: schemas and the CLI's ``--tier`` choices all read the same names, in this order.
Tier = Literal["working", "episodic", "semantic", "procedural"]
TIERS: frozenset[str] = frozenset(get_args(Tier))

#: Roles a captured turn can have (declared like ``Tier``).
Role = Literal["user", "assistant", "system", "tool", "note"]
ROLES: frozenset[str] = frozenset(get_args(Role))

#: A provenance entry as callers append and read it: ``{ts, cue, session_id}``
#: plus anything else the caller chose to record. Stored exactly as given.
ProvenanceEntry = dict[str, Any]

#: Where a memory is in its life. ``active`` memories are recalled, packed,
#: listed and exported; ``hidden`` ones (forgotten, restorable until their
#: ``undo_until``) are none of these; ``superseded`` ones were replaced by a
#: newer memory and are recalled only on request (or as anti-hits).
State = Literal["active", "hidden", "superseded"]
STATES: tuple[str, ...] = get_args(State)

#: Lifecycle actions a record's ``history`` holds (recall provenance is apart).
HistoryAction = Literal["captured", "reinforced", "updated", "hidden", "restored", "superseded"]
#: One history item: ``{ts, action, session_id, detail}``, sealed with the row.
HistoryItem = dict[str, Any]


class ProvenancePair(NamedTuple):
    """One entry on its way to the log.

    ``entry_id`` is internal: it makes a replayed batch (after a spill or a
    crash) idempotent, and never appears in the entry a caller reads back.
    Plain ``(record_id, entry)`` 2-tuples are accepted wherever pairs are;
    they get a fresh entry id when they are first written.
    """

    record_id: UUID | str
    entry: ProvenanceEntry
    entry_id: str


def new_entry_id() -> str:
    return uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time, UTC when it names no zone; None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(slots=True, kw_only=True)
class MemoryRow:
    """A memory as the store keeps it in memory: everything but the vector
    (held in one numpy matrix) and the provenance (held in the log).

    Slots keep 100k of these in tens of megabytes rather than hundreds.
    """

    id: UUID
    tier: str
    literal_surface: str
    aaak_index: str
    community_id: str | None
    centrality: float
    detail_level: int
    pinned: bool
    stability: float
    difficulty: float
    last_reviewed: datetime | None
    never_decay: bool
    never_merge: bool
    created_at: datetime
    updated_at: datetime
    language: str
    tags: list[str] = field(default_factory=list)
    session_id: str | None = None
    role: str | None = None
    #: When the words were said (the capture's ``ts``); defaults to created_at.
    event_time: datetime | None = None
    #: How many times an identical capture was folded into this record.
    reinforcements: int = 0
    #: Set while the memory is forgotten in ``hide`` mode; purged after ``undo_until``.
    hidden_at: datetime | None = None
    undo_until: datetime | None = None
    #: Set when a newer memory replaced this one (``memory_capture(supersedes=...)``).
    valid_to: datetime | None = None
    superseded_by: UUID | None = None
    #: Lifecycle actions, oldest first (``HistoryItem``s).
    history: list[HistoryItem] = field(default_factory=list)
    #: The project it was said in (a git root or directory, ``project.project_of``).
    project: str | None = None

    @classmethod
    def from_record(cls, record: MemoryRecord) -> MemoryRow:
        return cls(id=record.id, **{name: getattr(record, name) for name in ROW_FIELDS})

    def to_record(
        self, embedding: list[float], provenance: list[ProvenanceEntry]
    ) -> MemoryRecord:
        values = {name: getattr(self, name) for name in ROW_FIELDS}
        values["tags"] = list(self.tags)
        values["history"] = [dict(item) for item in self.history]
        return MemoryRecord(id=self.id, embedding=embedding, provenance=provenance, **values)

    @property
    def said_at(self) -> datetime:
        """When the words were said: the event time if known, else creation."""
        return self.event_time or self.created_at

    @property
    def valid_from(self) -> datetime:
        """From when the memory holds: when it was said."""
        return self.said_at

    @property
    def state(self) -> State:
        if self.hidden_at is not None:
            return "hidden"
        return "superseded" if self.superseded_by is not None else "active"


@dataclass(slots=True, kw_only=True)
class MemoryRecord(MemoryRow):
    """One verbatim memory, whole: a row plus its vector and its provenance.

    ``literal_surface`` is the text exactly as it was said. ``provenance`` is
    the list of recall events in append order; the store keeps it in an
    append-only log, never inside the record row.
    """

    embedding: list[float]
    provenance: list[ProvenanceEntry]

    def __post_init__(self) -> None:
        if not isinstance(self.id, UUID):
            raise ValueError(f"id must be a UUID, got {type(self.id).__name__}")
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {sorted(TIERS)}, got {self.tier!r}")
        if not isinstance(self.language, str) or not self.language.strip():
            raise ValueError("language must be a non-empty string such as 'en'")
        if not isinstance(self.literal_surface, str):
            raise ValueError("literal_surface must be a string")
        if len(self.embedding) != EMBED_DIM:
            raise ValueError(
                f"embedding must have {EMBED_DIM} dimensions, got {len(self.embedding)}"
            )
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {self.role!r}")
        for name in ("created_at", "updated_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")
        if not all(isinstance(t, str) for t in self.tags):
            raise ValueError("tags must be strings")


#: Fields of a record that are neither its id, its vector nor its provenance.
ROW_FIELDS = tuple(name for name in MemoryRow.__dataclass_fields__ if name != "id")
