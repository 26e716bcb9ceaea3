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

from iai_mcp.core.admin import ADMIN_METHODS
from iai_mcp.core.capture import capture
from iai_mcp.embed import embedder_for
from iai_mcp.errors import NotFound, UnknownMethod
from iai_mcp.log import logger
from iai_mcp.core.params import (
    CAPTURE_PARAMS,
    MAX_BUDGET_TOKENS,
    MAX_CUE_CHARS,
    MAX_K,
    Params,
    capture_request,
    row_summary,
)
from iai_mcp.core.recall import RecallQuery, recall
from iai_mcp.core.redact import redact
from iai_mcp.store import MemoryStore
from iai_mcp.types import TIERS, utcnow

#: How long memory_get waits for queued provenance, so a recall that
#: returned is visible in the record that follows.
GET_FLUSH_TIMEOUT_S = 2.0


_log = logger("iai_mcp.core")


def _memory_capture(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    request = capture_request(Params("memory_capture", params, set(CAPTURE_PARAMS)))
    result = capture(store, embedder_for(store), request)
    return {
        "status": result.status,
        "record_id": str(result.record_id),
        "reason": result.reason,
        "redacted": list(result.redacted),
    }


def _memory_recall(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    p = Params("memory_recall", params, {
        "cue", "session_id", "cue_embedding", "k", "budget_tokens", "tier", "tags", "since", "until",
    })
    query = RecallQuery(
        cue=p.text("cue", required=True, max_chars=MAX_CUE_CHARS, nonempty=True),  # type: ignore[arg-type]
        cue_embedding=p.vector("cue_embedding"),
        k=p.integer("k", 10, 1, MAX_K),
        budget_tokens=p.integer("budget_tokens", 1500, 1, MAX_BUDGET_TOKENS),
        tier=p.choice("tier", TIERS, None),
        tags=p.tags(),
        since=p.time("since"),
        until=p.time("until"),
    )
    session_id = p.text("session_id")
    embedder = None if query.cue_embedding is not None else embedder_for(store)
    result = recall(store, embedder, query)
    now = utcnow().isoformat()
    # A cue can carry a secret as easily as a capture can; the log keeps it
    # redacted like the memories (ranking above used the cue as given).
    cue = redact(query.cue).text
    pairs = [
        (hit.row.id, {"ts": now, "cue": cue, "session_id": session_id})
        for hit in result.hits
    ]
    try:
        store.queue_provenance_batch(pairs)
    except Exception as exc:  # provenance never fails a recall
        _log("provenance_failed", error=f"{type(exc).__name__}: {exc}", pairs=len(pairs))
    hits = [
        {**row_summary(hit.row), "score": round(hit.score, 6), "reason": hit.reason}
        for hit in result.hits
    ]
    return {"hits": hits, "anti_hits": [], "budget_used": result.budget_used}


def _memory_get(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    p = Params("memory_get", params, {"id"})
    record_id = p.record_id("id")
    store.flush_provenance(GET_FLUSH_TIMEOUT_S)
    record = store.get(record_id)
    if record is None:
        raise NotFound(f"memory_get: no memory with id {record_id}")
    return {
        **row_summary(record),  # a MemoryRecord is a MemoryRow
        "pinned": record.pinned,
        "language": record.language,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "reinforcements": record.reinforcements,
        "provenance": record.provenance,
    }


METHODS: dict[str, Callable[[MemoryStore, Mapping[str, Any]], dict[str, Any]]] = {
    "memory_capture": _memory_capture,
    "memory_recall": _memory_recall,
    "memory_get": _memory_get,
    **ADMIN_METHODS,
}


def dispatch(store: MemoryStore, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``method`` with ``params`` against ``store`` and return its result."""
    handler = METHODS.get(method) if isinstance(method, str) else None
    if handler is None:
        raise UnknownMethod(f"unknown method {method!r}; known: {sorted(METHODS)}")
    return handler(store, params)
