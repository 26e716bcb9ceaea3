"""Verbatim capture: the words exactly as said, embedded, sealed, stored once.

An identical text already in the store is not stored again: the existing
record is reinforced (its count and ``updated_at`` move). The same turn
delivered twice (same text, same session, same time: a hook that ran again)
is skipped, so replays change nothing.

Secrets (API keys, tokens, private keys, passwords; see ``redact``) are
replaced by ``[REDACTED:<kind>]`` in the text and the cue before anything is
embedded, compared or stored, so they never reach the disk and identical
texts are recognised by their redacted form.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID, uuid4

from iai_mcp.core.redact import redact
from iai_mcp.core.results import CaptureStatus
from iai_mcp.embed import Embedder
from iai_mcp.store import MemoryStore
from iai_mcp.types import MemoryRecord, utcnow


@dataclass(frozen=True)
class CaptureRequest:
    text: str
    session_id: str | None = None
    role: str | None = None
    cue: str | None = None
    tier: str = "episodic"
    tags: tuple[str, ...] = ()
    said_at: datetime | None = None
    pinned: bool = False
    language: str = "en"


@dataclass(frozen=True)
class Captured:
    status: CaptureStatus
    record_id: UUID
    reason: str
    notes: list[str] = field(default_factory=list)
    #: The kind of each secret removed before storing, in text order (text, then cue).
    redacted: tuple[str, ...] = ()


def _without_secrets(request: CaptureRequest) -> tuple[CaptureRequest, tuple[str, ...]]:
    text = redact(request.text)
    cue = redact(request.cue) if request.cue else None
    kinds = text.kinds + (cue.kinds if cue else ())
    if not kinds:
        return request, ()
    return replace(request, text=text.text, cue=cue.text if cue else request.cue), kinds


def _reporting(result: Captured, kinds: tuple[str, ...]) -> Captured:
    if not kinds:
        return result
    names = ", ".join(dict.fromkeys(kinds))
    note = f"{len(kinds)} secret(s) redacted before storing ({names})"
    return replace(result, reason=f"{result.reason}; {note}", redacted=kinds)


def _new_record(request: CaptureRequest, vector: list[float], now: datetime) -> MemoryRecord:
    provenance = []
    if request.cue:
        provenance.append(
            {"ts": now.isoformat(), "cue": request.cue, "session_id": request.session_id, "kind": "capture"}
        )
    return MemoryRecord(
        id=uuid4(),
        tier=request.tier,
        literal_surface=request.text,
        aaak_index="",
        embedding=vector,
        community_id=None,
        centrality=0.0,
        detail_level=2,
        pinned=request.pinned,
        stability=0.0,
        difficulty=0.0,
        last_reviewed=None,
        never_decay=request.pinned,
        never_merge=False,
        provenance=provenance,
        created_at=now,
        updated_at=now,
        language=request.language,
        tags=list(dict.fromkeys(request.tags)),
        session_id=request.session_id,
        role=request.role,
        event_time=request.said_at or now,
    )


def _fold_into_existing(store: MemoryStore, request: CaptureRequest, now: datetime) -> Captured | None:
    """Skip or reinforce when the text is already stored; None when it is new."""
    existing = store.find_identical(request.text)
    if existing is None or existing.never_merge:
        return None
    if existing.session_id == request.session_id and existing.said_at == (request.said_at or now):
        return Captured(
            "skipped", existing.id, "the same turn was already captured (same text, session and time)"
        )
    store.update(
        existing.id,
        reinforcements=existing.reinforcements + 1,
        updated_at=now,
        pinned=existing.pinned or request.pinned,
        tags=list(dict.fromkeys([*existing.tags, *request.tags])),
    )
    return Captured(
        "reinforced",
        existing.id,
        f"identical text already stored; reinforced ({existing.reinforcements + 1} repeats)",
    )


def capture(store: MemoryStore, embedder: Embedder, request: CaptureRequest) -> Captured:
    request, kinds = _without_secrets(request)
    now = utcnow()
    folded = _fold_into_existing(store, request, now)
    if folded is not None:
        return _reporting(folded, kinds)
    record = _new_record(request, embedder.embed([request.text])[0].tolist(), now)
    store.insert(record)
    return _reporting(Captured("inserted", record.id, "new memory stored verbatim"), kinds)


def capture_many(
    store: MemoryStore, embedder: Embedder, requests: list[CaptureRequest]
) -> list[Captured]:
    """Capture a batch: new texts are embedded together and inserted in one
    commit; repeats (in the store or earlier in the batch) fold as in capture."""
    cleaned = [_without_secrets(request) for request in requests]
    requests = [request for request, _ in cleaned]
    now = utcnow()
    results: list[Captured | None] = [None] * len(requests)
    fresh: dict[str, int] = {}  # text -> index of its first new request in this batch
    for i, request in enumerate(requests):
        if request.text in fresh:
            continue
        folded = _fold_into_existing(store, request, now)
        if folded is None:
            fresh[request.text] = i
        else:
            results[i] = folded
    order = list(fresh.values())
    vectors = embedder.embed([requests[i].text for i in order]) if order else []
    records = [_new_record(requests[i], vec.tolist(), now) for i, vec in zip(order, vectors)]
    store.insert_many(records)
    for i, record in zip(order, records):
        results[i] = Captured("inserted", record.id, "new memory stored verbatim")
    for i, request in enumerate(requests):
        if results[i] is None:
            # A repeat within the batch: fold into the record just inserted.
            results[i] = _fold_into_existing(store, request, now)
    return [_reporting(result, kinds) for result, (_, kinds) in zip(results, cleaned)]  # type: ignore[arg-type]
