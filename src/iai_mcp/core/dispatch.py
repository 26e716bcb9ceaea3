"""dispatch: the one entry point for every method, whoever calls it.

The MCP server, the CLI, hooks and the daemon all come through
``dispatch(store, method, params)``. It checks the parameters against the
method's contract, calls one library function, and returns a JSON-ready
dict. Wrong input raises an ``InvalidInput`` subclass before anything is
written.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import numpy as np

from iai_mcp.core import contract
from iai_mcp.core.admin import ADMIN_METHODS
from iai_mcp.core.capture import capture
from iai_mcp.core.contract import CaptureParams, GetParams, ListParams, NoParams, RecallParams
from iai_mcp.core.digest import DIGEST_METHODS
from iai_mcp.core.lifecycle import LIFECYCLE_METHODS
from iai_mcp.core.listing import list_memories, tag_counts
from iai_mcp.core.overview import OVERVIEW_METHODS
from iai_mcp.core.recall import Hit, RecallQuery, min_score, recall
from iai_mcp.core.redact import redact, redact_label
from iai_mcp.core.results import AntiHit, RecallHit, memory_dict, memory_in_full
from iai_mcp.embed import embedder_for
from iai_mcp.errors import NotFound
from iai_mcp.log import logger
from iai_mcp.provenance_queue.batch import keyed_entry_id
from iai_mcp.store import MemoryStore
from iai_mcp.types import ProvenancePair, new_entry_id, parse_time, utcnow

#: How long memory_get waits for queued provenance, so a recall that
#: returned is visible in the record that follows.
GET_FLUSH_TIMEOUT_S = 2.0


_log = logger("iai_mcp.core")


def _memory_capture(store: MemoryStore, args: CaptureParams) -> dict[str, Any]:
    result = capture(store, embedder_for(store), args.request())
    return {
        "status": result.status,
        "record_id": str(result.record_id),
        "reason": result.reason,
        "redacted": list(result.redacted),
        "related": [
            {"record_id": str(item.record_id), "score": item.score, "excerpt": item.excerpt}
            for item in result.related
        ],
    }


def _memory_recall(store: MemoryStore, args: RecallParams, request_key: str | None = None) -> dict[str, Any]:
    query = RecallQuery(
        cue=args.cue,
        cue_embedding=None if args.cue_embedding is None else np.asarray(args.cue_embedding, dtype=np.float32),
        k=args.k,
        budget_tokens=args.budget_tokens,
        tier=args.tier,
        tags=tuple(args.tags or ()),
        since=parse_time(args.since),
        until=parse_time(args.until),
        include_superseded=args.include_superseded,
        min_score=args.min_score,
        prefer_project=args.project,
        now=parse_time(args.now),
    )
    session_id = redact_label(args.session_id)  # stored in provenance: redacted like the cue
    embedder = None if query.cue_embedding is not None else embedder_for(store)
    result = recall(store, embedder, query)
    now = utcnow().isoformat()
    # A cue can carry a secret as easily as a capture can; the log keeps it
    # redacted like the memories (ranking above used the cue as given).
    cue = redact(query.cue).text
    pairs = [
        ProvenancePair(hit.row.id, {"ts": now, "cue": cue, "session_id": session_id},
                       keyed_entry_id(request_key, hit.row.id) if request_key else new_entry_id())
        for hit in result.hits
    ]
    try:
        store.queue_provenance_batch(pairs)
    except Exception as exc:  # provenance never fails a recall
        _log.warning("provenance_failed", error=f"{type(exc).__name__}: {exc}", pairs=len(pairs))
    hits = [memory_dict(hit.row, RecallHit, **_hit_fields(hit)) for hit in result.hits]
    anti_hits = [
        memory_dict(hit.row, AntiHit, score=round(hit.score, 6)) for hit in result.anti_hits
    ]
    return {"hits": hits, "anti_hits": anti_hits, "budget_used": result.budget_used,
            "below_floor": result.below_floor,
            "note": _floor_note(result.hits, result.below_floor, min_score(query, embedder or store.embedder))}


def _floor_note(hits: list[Hit], below: int, floor: float | None) -> str | None:
    if hits or not below:
        return None
    return (f"nothing relevant found: the {below} best matches scored below min_score {floor} "
            "(semantic similarity), so none was returned. Try other words, or a lower "
            "min_score to see weaker matches.")


def _hit_fields(hit: Hit) -> dict[str, Any]:
    """What a hit adds to its memory's summary; an excerpt replaces the text."""
    fields: dict[str, Any] = {"score": round(hit.score, 6), "reason": hit.reason, "excerpt": None}
    if hit.excerpt is not None:
        part = hit.excerpt
        fields["literal_surface"] = part.text
        fields["excerpt"] = {"start": part.start, "end": part.end, "length": part.length}
    return fields


def _memory_get(store: MemoryStore, args: GetParams) -> dict[str, Any]:
    record_id = UUID(args.id)
    store.flush_provenance(GET_FLUSH_TIMEOUT_S)
    row = store.row(record_id)
    if row is None:
        raise NotFound(f"memory_get: no memory with id {record_id}")
    return memory_in_full(store, row)


# ---- correcting and browsing (issue 9) ---------------------------------------


def _memory_list(store: MemoryStore, args: ListParams) -> dict[str, Any]:
    return list_memories(store, args)


def _memory_tags(store: MemoryStore, args: NoParams) -> dict[str, Any]:
    return tag_counts(store)


#: The function behind each method of ``contract.METHODS`` (a test keeps the two in step).
METHODS: dict[str, Callable[[MemoryStore, Any], dict[str, Any]]] = {
    "memory_capture": _memory_capture,
    "memory_recall": _memory_recall,
    "memory_get": _memory_get,
    **ADMIN_METHODS,
    **LIFECYCLE_METHODS,  # forget, restore, update (issue 9)
    "memory_list": _memory_list,
    "memory_tags": _memory_tags,
    **OVERVIEW_METHODS,  # the viewer's Overview page (issue 12)
    **DIGEST_METHODS,  # keyed_digest (issue 11)
}


#: Methods whose writes a request key makes idempotent: their entry ids derive from it.
_KEYED: dict[str, Callable[..., dict[str, Any]]] = {"memory_recall": _memory_recall}


def dispatch(
    store: MemoryStore, method: str, params: Mapping[str, Any] | None = None, *, request_key: str | None = None
) -> dict[str, Any]:
    """Run ``method`` with ``params`` against ``store`` and return its result.

    ``request_key`` names one request however often it is sent (the daemon
    client sends one with each call and keeps it on a resend): a recall run
    twice under one key leaves its provenance entries once.
    """
    args = contract.parse(method, params)  # UnknownMethod / InvalidInput before anything runs
    keyed = _KEYED.get(method)
    if keyed is not None and request_key is not None:
        return keyed(store, args, request_key=request_key)
    return METHODS[method](store, args)
