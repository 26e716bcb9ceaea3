"""Verbatim capture: the words exactly as said, embedded, sealed, stored once.

An identical text already in the store is not stored again: the existing
record is reinforced (its count and ``updated_at`` move). The same turn
delivered twice (same text, same session, same time: a hook that ran again)
is skipped, so replays change nothing.

Only an active record takes repeats. A text identical to a forgotten
(hidden) memory, said again in another turn, is stored as a new active
memory: the user said it again, and folding it into the hidden record
would keep it hidden and purge it with the old one. A text identical to a
superseded memory is stored anew too: the old record was corrected, and
saying the same words again (billing moved back to Postgres) makes them
current again, while the old record keeps its place in the correction chain.
In both cases the ``reason`` says so, and later repeats fold into the new
record (``MemoryStore.find_identical`` answers with the active one). The
same turn replayed is still skipped: a hook re-reading a transcript must not
bring back what the user forgot.

Secrets (API keys, tokens, private keys, passwords; see ``redact``) are
replaced by ``[REDACTED:<kind>]`` in the text and the cue before anything is
embedded, compared or stored, so they never reach the disk and identical
texts are recognised by their redacted form.

A capture may replace earlier memories (``supersedes``): each gets
``valid_to`` (the new capture's time), ``superseded_by`` (the new record) and
a "superseded" history item. Every target is checked before anything is
written. A capture also reports ``related``: the few active memories most
similar to the new text, so the assistant can decide to supersede them; it
never merges anything on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import numpy as np

from iai_mcp.core.links import find_cycle
from iai_mcp.core.redact import redact
from iai_mcp.core.results import CaptureStatus
from iai_mcp.embed import Embedder
from iai_mcp.errors import InvalidInput, NotFound
from iai_mcp.retrieval import top_k
from iai_mcp.retrieval.quantized import exact_top
from iai_mcp.store import STATE_CODES, MemoryStore
from iai_mcp.store.history import history_item
from iai_mcp.types import HistoryItem, MemoryRecord, MemoryRow, utcnow

#: Cosine (MiniLM) at or above which an active memory is listed as ``related``.
#: Measured by ``python -m bench.related --raw`` (bench/results/related.json;
#: LoCoMo's 3 conversations, turns without their "Speaker:" label, as hook
#: captures look): random pairs of turns of one conversation reach 0.6 in
#: 1.8% of pairs (p99 0.635), turns that are evidence for the same question
#: in 17% (median 0.433: same topic is not same fact), and 16 hand-written
#: corrections ("billing runs on Postgres" / "we moved billing to DynamoDB")
#: have median 0.734 and 14 of 16 (87.5%) reach 0.6. 0.6 keeps most corrections and little noise;
#: 0.5 lets 6% of random pairs through (25% with speaker labels).
RELATED_MIN_SCORE = 0.6
#: At most this many related memories, best first.
RELATED_LIMIT = 3
#: Characters of a related memory's text shown as its excerpt.
EXCERPT_CHARS = 160
#: "reinforced" history items kept per record. A turn such as "ok, go on"
#: is said thousands of times; each item is ~120 bytes sealed into the row
#: and rewritten with it on every later change, so past this many the
#: history stops growing (``reinforcements`` keeps the exact count).
MAX_REINFORCED_HISTORY = 100


@dataclass(frozen=True)
class Restored:
    """The lifecycle an imported record arrives with (``core.transfer``).

    ``record_id`` is the id to give it when it is inserted (ids named by
    ``superseded_by`` inside one batch resolve to the records they became).
    """

    record_id: UUID | None = None
    history: tuple[HistoryItem, ...] = ()
    hidden_at: datetime | None = None
    undo_until: datetime | None = None
    valid_to: datetime | None = None
    superseded_by: UUID | None = None
    #: The id the record was exported with: how an error names it.
    exported_id: str | None = None
    #: What an export keeps beside the lifecycle (None: a fresh record's value).
    created_at: datetime | None = None
    updated_at: datetime | None = None
    reinforcements: int = 0


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
    #: Records this memory replaces.
    supersedes: tuple[UUID, ...] = ()
    restored: Restored | None = None
    project: str | None = None


@dataclass(frozen=True)
class Related:
    record_id: UUID
    score: float
    excerpt: str


@dataclass(frozen=True)
class Captured:
    status: CaptureStatus
    record_id: UUID
    reason: str
    notes: list[str] = field(default_factory=list)
    #: The kind of each secret removed before storing, in text order (text, then cue).
    redacted: tuple[str, ...] = ()
    related: tuple[Related, ...] = ()
    #: The records this capture marked superseded (a resent capture: none again).
    superseded: tuple[UUID, ...] = ()


def _without_secrets(request: CaptureRequest) -> tuple[CaptureRequest, tuple[str, ...]]:
    """Every free text a capture stores, redacted: the text, the cue, the
    session id and the tags (a label can carry a pasted token too)."""
    text = redact(request.text)
    cue = redact(request.cue) if request.cue else None
    session = redact(request.session_id) if request.session_id else None
    tags = [redact(tag) for tag in request.tags]
    kinds = text.kinds + (cue.kinds if cue else ()) + (session.kinds if session else ()) + tuple(
        kind for tag in tags for kind in tag.kinds)
    if not kinds:
        return request, ()
    return replace(request, text=text.text, cue=cue.text if cue else request.cue,
                   session_id=session.text if session else request.session_id,
                   tags=tuple(tag.text for tag in tags)), kinds


def _reporting(result: Captured, kinds: tuple[str, ...]) -> Captured:
    if not kinds:
        return result
    names = ", ".join(dict.fromkeys(kinds))
    note = f"{len(kinds)} secret(s) redacted before storing ({names})"
    return replace(result, reason=f"{result.reason}; {note}", redacted=kinds)


def _new_record(
    request: CaptureRequest, vector: list[float], now: datetime, record_id: UUID | None = None,
    superseded_by: UUID | None = None,
) -> MemoryRecord:
    provenance = []
    if request.cue:
        provenance.append(
            {"ts": now.isoformat(), "cue": request.cue, "session_id": request.session_id, "kind": "capture"}
        )
    restored = request.restored or Restored()
    detail = {"supersedes": [str(rid) for rid in request.supersedes]} if request.supersedes else None
    history = list(restored.history) or [history_item("captured", now, session_id=request.session_id, detail=detail)]
    record_id = record_id or uuid4()
    return MemoryRecord(
        id=record_id,
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
        created_at=restored.created_at or now,
        updated_at=restored.updated_at or restored.created_at or now,
        language=request.language,
        tags=list(dict.fromkeys(request.tags)),
        session_id=request.session_id,
        role=request.role,
        project=request.project,
        event_time=request.said_at or now,
        reinforcements=restored.reinforcements,
        hidden_at=restored.hidden_at,
        undo_until=restored.undo_until,
        # A link to itself (an import whose two ends folded together) is no link.
        valid_to=restored.valid_to if superseded_by not in (None, record_id) else None,
        superseded_by=superseded_by if superseded_by != record_id else None,
        history=history,
    )


def _identical(store: MemoryStore, request: CaptureRequest, now: datetime) -> tuple[MemoryRow | None, str]:
    """The record ``request`` folds into (None: store it anew), and what to
    add to the reason when an identical text is not folded into."""
    existing = store.find_identical(request.text)
    if existing is None or existing.never_merge:
        return None, ""
    if existing.state == "active" or _same_turn(existing, request, now):
        return existing, ""
    if existing.state == "hidden":
        return None, (f"an identical text was forgotten (hidden) as {existing.id}; said again, it is "
                      "stored as a new active memory")
    return None, (f"an identical text was superseded as {existing.id} (by {existing.superseded_by}); "
                  "said again, it is stored as a new active memory")


def _same_turn(existing: MemoryRow, request: CaptureRequest, now: datetime) -> bool:
    return existing.session_id == request.session_id and existing.said_at == (request.said_at or now)


def _skipped_reason(existing: MemoryRow) -> str:
    reason = "the same turn was already captured (same text, session and time)"
    if existing.state == "hidden":
        reason += "; it was forgotten and stays forgotten"
    return reason


def _reinforcement(existing: MemoryRow, request: CaptureRequest, now: datetime) -> tuple[dict[str, Any], HistoryItem | None]:
    """The changes and history item that fold ``request`` into ``existing``."""
    changes = {
        "reinforcements": existing.reinforcements + 1,
        "updated_at": now,
        "pinned": existing.pinned or request.pinned,
        "tags": list(dict.fromkeys([*existing.tags, *request.tags])),
    }
    kept = sum(1 for item in existing.history if item.get("action") == "reinforced")
    item = None
    if kept < MAX_REINFORCED_HISTORY:
        item = history_item("reinforced", now, session_id=request.session_id,
                            detail={"repeats": existing.reinforcements + 1})
    return changes, item


def _fold_into(store: MemoryStore, existing: MemoryRow, request: CaptureRequest, now: datetime) -> Captured:
    """Skip ``request`` (the same turn) or reinforce ``existing`` with it."""
    if _same_turn(existing, request, now):
        return Captured("skipped", existing.id, _skipped_reason(existing))
    changes, item = _reinforcement(existing, request, now)
    store.update(existing.id, history=item, **changes)
    return Captured(
        "reinforced",
        existing.id,
        f"identical text already stored; reinforced ({existing.reinforcements + 1} repeats)",
    )


# ------------------------------------------------------------- supersede


def _reaches(store: MemoryStore, start: UUID, goal: UUID) -> bool:
    """Whether following ``superseded_by`` from ``start`` reaches ``goal``."""
    seen: set[UUID] = set()
    current: UUID | None = start
    while current is not None and current not in seen:
        if current == goal:
            return True
        seen.add(current)
        row = store.row(current)
        current = row.superseded_by if row is not None else None
    return False


def supersede_plan(
    store: MemoryStore, new_id: UUID, targets: tuple[UUID, ...], valid_to: datetime,
    session_id: str | None, now: datetime, method: str = "memory_capture",
) -> list[tuple[UUID, dict[str, Any], HistoryItem]]:
    """``store.update_many`` entries that mark ``targets`` superseded by
    ``new_id``; raises (and nothing is written) when any target cannot be.

    A target already superseded by ``new_id`` is left out: a capture sent
    again after a lost answer then changes nothing.
    """
    updates = []
    for target in dict.fromkeys(targets):
        row = store.row(target)
        if row is None:
            raise NotFound(f"{method}: supersedes names {target}, which is not in the store (or was purged)")
        if target == new_id:
            raise InvalidInput(f"{method}: a memory cannot supersede itself ({target} has the same text)")
        if row.state == "hidden":
            raise InvalidInput(
                f"{method}: {target} is forgotten (hidden); restore it first or leave it out of supersedes"
            )
        if row.superseded_by == new_id:
            continue
        if row.superseded_by is not None:
            raise InvalidInput(
                f"{method}: {target} was already superseded by {row.superseded_by}; supersede that one instead"
            )
        if _reaches(store, new_id, target):
            raise InvalidInput(
                f"{method}: superseding {target} would make a cycle: it already supersedes {new_id}"
            )
        changes = {"valid_to": valid_to, "superseded_by": new_id, "updated_at": now}
        updates.append((target, changes, history_item("superseded", now, session_id=session_id,
                                                  detail={"superseded_by": str(new_id)})))
    return updates


# --------------------------------------------------------------- related


def related_to(store: MemoryStore, vector: np.ndarray, exclude: UUID) -> tuple[Related, ...]:
    """Up to ``RELATED_LIMIT`` active memories at or above ``RELATED_MIN_SCORE``
    cosine to ``vector``, best first, with exact cosines: one pass over the
    store's int8 codes, then the candidates their error bounds leave
    re-scored exactly (``retrieval.quantized.exact_top``; a few milliseconds
    at 100k memories)."""
    rows = store.rows()
    states = store.states()
    n = min(len(rows), len(states))
    if n == 0:
        return ()
    vec = np.asarray(vector, dtype=np.float32)
    vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
    approx, bound = store.approx_cosines(vec)
    approx = np.where(states[:n] == STATE_CODES["active"], approx[:n], np.float32(-np.inf))
    found_rows, exact = exact_top(approx, bound[:n], RELATED_LIMIT + 1, lambda r: store.exact_cosines(r, vec))
    scores = np.full(n, -np.inf, dtype=np.float32)
    scores[found_rows] = exact
    found = []
    for i in top_k(scores, RELATED_LIMIT + 1):
        row, score = rows[i], float(scores[i])
        if score < RELATED_MIN_SCORE:
            break
        if row.id == exclude or row.state != "active":
            continue
        excerpt = row.literal_surface if len(row.literal_surface) <= EXCERPT_CHARS else (
            row.literal_surface[: EXCERPT_CHARS - 1] + "…")
        found.append(Related(row.id, round(score, 4), excerpt))
    return tuple(found[:RELATED_LIMIT])


# --------------------------------------------------------------- capture


def capture(store: MemoryStore, embedder: Embedder, request: CaptureRequest) -> Captured:
    request, kinds = _without_secrets(request)
    now = utcnow()
    said = request.said_at or now
    existing, anew = _identical(store, request, now)
    if existing is not None and request.supersedes and existing.state == "hidden":
        raise InvalidInput(  # the same turn, resent: it folds into the forgotten record
            f"memory_capture: this turn is a forgotten (hidden) memory, {existing.id}; restore it first"
        )
    record_id = existing.id if existing is not None else uuid4()
    # Every target is checked before anything is written.
    updates = supersede_plan(store, record_id, request.supersedes, said, request.session_id, now)
    vector = embedder.embed([request.text])[0]
    superseded = tuple(target for target, _, _ in updates)
    if existing is None:
        # Two commits: the new record first, then the old ones' links to it.
        # A crash between leaves both active (the capture can be sent again:
        # it folds into the new record and links the old ones then), never a
        # superseded_by pointing at a record that was not written.
        store.insert(_new_record(request, vector.tolist(), now, record_id))
        store.update_many(updates)
        reason = f"new memory stored verbatim; {anew}" if anew else "new memory stored verbatim"
        result = Captured("inserted", record_id, reason, superseded=superseded)
    elif _same_turn(existing, request, now):
        store.update_many(updates)
        result = Captured("skipped", record_id, _skipped_reason(existing), superseded=superseded)
    else:
        changes, item = _reinforcement(existing, request, now)
        store.update_many([(record_id, changes, item), *updates])  # one commit
        result = Captured("reinforced", record_id,
                          f"identical text already stored; reinforced ({existing.reinforcements + 1} repeats)",
                          superseded=superseded)
    if superseded:
        result = replace(result, reason=f"{result.reason}; supersedes {len(superseded)} memory(ies)")
    return _reporting(replace(result, related=related_to(store, vector, record_id)), kinds)


@dataclass
class _BatchPlan:
    """What a batch will do, decided before anything is written."""

    #: Request index -> the stored record it folds into (skip or reinforce).
    folds: dict[int, MemoryRow]
    #: Text -> index of its first new request without an id; later ones fold into it.
    fresh: dict[str, int]
    #: Request index of each new record -> its id, in insertion order.
    ids: dict[int, UUID]
    #: Request index -> why an identical stored text was not folded into.
    anew: dict[int, str]
    #: Id named by the batch (``Restored.record_id``) -> the record it became.
    became: dict[UUID, UUID]
    #: Request index -> the record with its id (stored, or earlier in the batch): skipped.
    known: dict[int, UUID] = field(default_factory=dict)


def _plan_batch(store: MemoryStore, requests: list[CaptureRequest], now: datetime) -> _BatchPlan:
    """Decide every request's fate and check the batch's supersede links
    (with the stored links they lead into) for a cycle; reads only.

    A request that names its id (an imported record) is matched by that id
    only: stored already (or earlier in the batch) it is skipped, else it is
    inserted under it, even when its text is stored. Two memories can share
    a text (one forgotten, the text said again, the first restored); folding
    the second into the first by text lost it on a round trip."""
    plan = _BatchPlan({}, {}, {}, {}, {})
    for i, request in enumerate(requests):
        wanted = request.restored.record_id if request.restored else None
        if wanted is not None:
            if store.row(wanted) is not None or wanted in plan.became:
                plan.known[i] = wanted
            else:
                plan.ids[i], plan.anew[i] = wanted, ""
            plan.became[wanted] = wanted
            continue
        if request.text in plan.fresh:
            continue
        existing, plan.anew[i] = _identical(store, request, now)
        if existing is None:
            plan.fresh[request.text] = i
            plan.ids[i] = uuid4()
        else:
            plan.folds[i] = existing
    _refuse_cycles(store, requests, plan)
    return plan


def _link_of(request: CaptureRequest, plan: _BatchPlan) -> UUID | None:
    link = request.restored.superseded_by if request.restored else None
    return plan.became.get(link, link) if link is not None else None


def _refuse_cycles(store: MemoryStore, requests: list[CaptureRequest], plan: _BatchPlan) -> None:
    """InvalidInput naming the records when the links the batch inserts, with
    the stored links they lead into, go round in a cycle: every memory in it
    would be superseded and recall would return none of them. (Records that
    fold into a stored one bring no link: an import changes no stored record.)"""
    links: dict[UUID, UUID] = {}
    index_of: dict[UUID, int] = {}
    for i, rid in plan.ids.items():
        index_of[rid] = i
        target = _link_of(requests[i], plan)
        if target is not None and target != rid:  # a link to itself is dropped (_new_record)
            links[rid] = target

    def next_of(node: UUID) -> UUID | None:
        if node in links or node in index_of:
            return links.get(node)
        row = store.row(node)
        return row.superseded_by if row is not None else None

    cycle = find_cycle(list(links), next_of)
    if cycle is None:
        return

    def name(node: UUID) -> str:
        if node not in index_of:
            return f"stored memory {node}"
        restored = requests[index_of[node]].restored
        exported = restored.exported_id if restored else None
        return f"records[{index_of[node]}]" + (f" (id {exported})" if exported else "")

    chain = " -> ".join(name(node) for node in [*cycle, cycle[0]])
    raise InvalidInput(
        f"memory_import: the superseded_by links make a cycle ({chain}); every memory in it would be "
        "superseded and none recalled. Fix or drop one of these links; nothing was imported"
    )


def check_batch(store: MemoryStore, requests: list[CaptureRequest]) -> None:
    """Raise what ``capture_many`` would raise for ``requests`` before
    writing (a supersede cycle); writes nothing. For an import's dry run."""
    _plan_batch(store, [request for request, _ in map(_without_secrets, requests)], utcnow())


def capture_many(
    store: MemoryStore, embedder: Embedder, requests: list[CaptureRequest]
) -> list[Captured]:
    """Capture a batch: new texts are embedded together and inserted in one
    commit; repeats (in the store or earlier in the batch) fold as in capture.
    ``supersedes`` is not taken here; imported links come as ``restored``,
    and a batch whose links would make a cycle is refused before anything
    is written."""
    cleaned = [_without_secrets(request) for request in requests]
    requests = [request for request, _ in cleaned]
    now = utcnow()
    plan = _plan_batch(store, requests, now)
    results: list[Captured | None] = [None] * len(requests)
    for i, existing in plan.folds.items():
        # Read again: an earlier request of the batch may have reinforced it.
        results[i] = _fold_into(store, store.row(existing.id) or existing, requests[i], now)
    for i, rid in plan.known.items():
        results[i] = Captured("skipped", rid, "a record with this id is already stored (imported before)")
    order = list(plan.ids)
    vectors = embedder.embed([requests[i].text for i in order]) if order else []
    records = [_new_record(requests[i], vec.tolist(), now, plan.ids[i], _link_of(requests[i], plan))
               for i, vec in zip(order, vectors)]
    store.insert_many(records)
    for i, record in zip(order, records):
        results[i] = Captured("inserted", record.id, "; ".join(filter(None, ("new memory stored verbatim", plan.anew[i]))))
    for i, request in enumerate(requests):
        if results[i] is None:
            # A repeat within the batch: fold into the record just inserted
            # (whatever its state: the batch brought both).
            inserted = store.row(plan.ids[plan.fresh[request.text]])
            assert inserted is not None  # inserted above, under the caller's store lock
            results[i] = _fold_into(store, inserted, request, now)
    return [_reporting(result, kinds) for result, (_, kinds) in zip(results, cleaned)]  # type: ignore[arg-type]
