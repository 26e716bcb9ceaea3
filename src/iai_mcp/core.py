"""dispatch: the one entry point for every method, whoever calls it.

The MCP server, the CLI, hooks and the daemon all come through
``dispatch(store, method, params)``. It checks the parameters against the
method's contract, calls one library function, and returns a JSON-ready
dict. Wrong input raises an ``InvalidInput`` subclass before anything is
written.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import numpy as np

from iai_mcp.capture import CaptureRequest, capture
from iai_mcp.embed import Embedder, default_embedder
from iai_mcp.errors import InvalidInput, LimitExceeded, NotFound, UnknownMethod
from iai_mcp.provenance_queue import spill_state
from iai_mcp.recall import RecallQuery, recall
from iai_mcp.session_pack import build_pack
from iai_mcp.store import MemoryStore
from iai_mcp.store.crypto import key_file_mode_problem
from iai_mcp.transfer import EXPORT_KEYS, ImportItem, export_page, import_items
from iai_mcp.types import EMBED_DIM, ROLES, TIERS, MemoryRow, utcnow

MAX_TEXT_CHARS = 100_000
MAX_CUE_CHARS = 10_000
MAX_K = 200
MAX_BUDGET_TOKENS = 100_000
MAX_TAGS = 64
MAX_TAG_CHARS = 128
MAX_ID_CHARS = 256
MAX_PAGE = 1000
MAX_PROVENANCE_PER_RECORD = 10_000
SESSION_PACK_TOKENS = 3000

_MISSING = object()


class Params:
    """Typed reads of a method's parameters, each failing with a message that
    names the parameter and what it should be."""

    def __init__(self, method: str, params: Any, allowed: set[str]) -> None:
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidInput(f"{method}: params must be an object, got {type(params).__name__}")
        unknown = set(params) - allowed
        if unknown:
            raise InvalidInput(
                f"{method}: unknown parameter(s) {sorted(map(str, unknown))}; "
                f"accepted: {sorted(allowed)}"
            )
        self.method = method
        self.values = params

    def _get(self, name: str, required: bool) -> Any:
        value = self.values.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise InvalidInput(f"{self.method}: parameter {name!r} is required")
            return _MISSING
        return value

    def text(self, name: str, *, required: bool = False, max_chars: int = MAX_ID_CHARS,
             default: str | None = None, nonempty: bool = False) -> str | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise InvalidInput(f"{self.method}: {name!r} must be a string, got {type(value).__name__}")
        if "\x00" in value:
            raise InvalidInput(f"{self.method}: {name!r} must not contain NUL characters")
        if not _valid_unicode(value):
            raise InvalidInput(f"{self.method}: {name!r} must be valid Unicode (it has a lone surrogate)")
        if nonempty and not value.strip():
            raise InvalidInput(f"{self.method}: {name!r} must not be empty")
        if len(value) > max_chars:
            raise LimitExceeded(f"{self.method}: {name!r} is {len(value)} characters; the maximum is {max_chars}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{self.method}: {name!r} must be an integer, got {type(value).__name__}")
        if value < low:
            raise InvalidInput(f"{self.method}: {name!r} must be at least {low}")
        if value > high:
            raise LimitExceeded(f"{self.method}: {name!r} is {value}; the maximum is {high}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise InvalidInput(f"{self.method}: {name!r} must be true or false")
        return value

    def choice(self, name: str, options: frozenset[str], default: str | None) -> str | None:
        value = self.text(name, default=default)
        if value is not None and value not in options:
            raise InvalidInput(f"{self.method}: {name!r} must be one of {sorted(options)}, got {value!r}")
        return value

    def tags(self, name: str = "tags") -> tuple[str, ...]:
        value = self._get(name, False)
        if value is _MISSING:
            return ()
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise InvalidInput(f"{self.method}: {name!r} must be a list of strings")
        if len(value) > MAX_TAGS:
            raise LimitExceeded(f"{self.method}: at most {MAX_TAGS} tags")
        for tag in value:
            if not tag.strip() or len(tag) > MAX_TAG_CHARS or "\x00" in tag or not _valid_unicode(tag):
                raise InvalidInput(
                    f"{self.method}: each tag must be 1-{MAX_TAG_CHARS} characters, got {tag!r:.40}"
                )
        return tuple(value)

    def time(self, name: str) -> datetime | None:
        value = self.text(name, max_chars=64)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"{self.method}: {name!r} must be an ISO-8601 time such as 2026-05-08T13:56:00Z"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

    def record_id(self, name: str) -> UUID:
        value = self.text(name, required=True, max_chars=64)
        try:
            return UUID(value)
        except ValueError:
            raise InvalidInput(f"{self.method}: {name!r} must be a record id (a UUID)") from None

    def array(self, name: str, *, max_items: int) -> list[Any]:
        value = self._get(name, True)
        if not isinstance(value, list):
            raise InvalidInput(f"{self.method}: {name!r} must be a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise LimitExceeded(
                f"{self.method}: {name!r} has {len(value)} items; send at most {max_items} per call"
            )
        return value

    def vector(self, name: str) -> np.ndarray | None:
        value = self._get(name, False)
        if value is _MISSING:
            return None
        vec = None
        if (
            isinstance(value, (list, tuple))
            and len(value) == EMBED_DIM
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        ):
            # Checked after the cast: an int past float range, or a float past
            # float32 range, would otherwise become inf and NaN scores.
            with np.errstate(over="ignore"):
                try:
                    vec = np.asarray(value, dtype=np.float32)
                except OverflowError:
                    vec = None
        if vec is None or not np.all(np.isfinite(vec)):
            raise InvalidInput(f"{self.method}: {name!r} must be a list of {EMBED_DIM} finite numbers")
        return vec


def _valid_unicode(value: str) -> bool:
    # A lone surrogate (possible in a Python str, never in UTF-8) would fail
    # later, mid-write, as a UnicodeEncodeError.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _log(event: str, **fields: Any) -> None:
    line = {"ts": time.time(), "component": "iai_mcp.core", "event": event, **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


def embedder_for(store: MemoryStore) -> Embedder:
    """The store's embedder, binding the default model on first need."""
    if store.embedder is None:
        store.bind_embedder(default_embedder())
    return store.embedder  # type: ignore[return-value]


def _row_summary(row: MemoryRow) -> dict[str, Any]:
    return {
        "record_id": str(row.id),
        "literal_surface": row.literal_surface,
        "tier": row.tier,
        "tags": list(row.tags),
        "session_id": row.session_id,
        "role": row.role,
        "ts": row.said_at.isoformat(),
    }


# ------------------------------------------------------------------ methods


CAPTURE_PARAMS = frozenset({
    "text", "session_id", "role", "cue", "tier", "tags", "ts", "pinned", "language",
})


def _capture_request(p: Params) -> CaptureRequest:
    return CaptureRequest(
        text=p.text("text", required=True, max_chars=MAX_TEXT_CHARS, nonempty=True),  # type: ignore[arg-type]
        session_id=p.text("session_id"),
        role=p.choice("role", ROLES, None),
        cue=p.text("cue", max_chars=MAX_CUE_CHARS),
        tier=p.choice("tier", TIERS, "episodic"),  # type: ignore[arg-type]
        tags=p.tags(),
        said_at=p.time("ts"),
        pinned=p.flag("pinned"),
        language=p.text("language", default="en", max_chars=32, nonempty=True),  # type: ignore[arg-type]
    )


def _memory_capture(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    request = _capture_request(Params("memory_capture", params, set(CAPTURE_PARAMS)))
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
    pairs = [
        (hit.row.id, {"ts": now, "cue": query.cue, "session_id": session_id})
        for hit in result.hits
    ]
    try:
        store.queue_provenance_batch(pairs)
    except Exception as exc:  # provenance never fails a recall
        _log("provenance_failed", error=f"{type(exc).__name__}: {exc}", pairs=len(pairs))
    hits = [
        {**_row_summary(hit.row), "score": round(hit.score, 6), "reason": hit.reason}
        for hit in result.hits
    ]
    return {"hits": hits, "anti_hits": [], "budget_used": result.budget_used}


def _memory_get(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    p = Params("memory_get", params, {"id"})
    record_id = p.record_id("id")
    record = store.get(record_id)
    if record is None:
        raise NotFound(f"memory_get: no memory with id {record_id}")
    row = store.row(record_id)
    assert row is not None
    return {
        **_row_summary(row),
        "pinned": record.pinned,
        "language": record.language,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "reinforcements": record.reinforcements,
        "provenance": record.provenance,
    }


# ------------------------------------------------------- sessions and admin


def _session_start(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """The memory pack a new session starts with.

    params: ``session_id`` (its own memories are left out: they are already
    in its context), ``budget_tokens`` (default 3000). Returns ``text`` (the
    rendered pack, empty when there is nothing to show), ``budget_used``
    (estimated tokens of ``text``) and ``memories`` (what was packed, in
    order: pinned first, then most recently recalled, reinforced or captured).
    """
    p = Params("session_start", params, {"session_id", "budget_tokens"})
    budget = p.integer("budget_tokens", SESSION_PACK_TOKENS, 1, MAX_BUDGET_TOKENS)
    pack = build_pack(store, budget, exclude_session=p.text("session_id"))
    memories = [
        {**_row_summary(item.row), "pinned": item.row.pinned, "why": item.why, "at": item.at.isoformat()}
        for item in pack.items
    ]
    return {"text": pack.text, "budget_used": pack.tokens, "memories": memories}


def _warmup(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """Load the embedding model now, so the first capture or recall is fast.

    No params. Returns the embedder's ``name`` and the ``seconds`` it took.
    """
    Params("warmup", params, set())
    start = time.perf_counter()
    embedder = embedder_for(store)
    warm = getattr(embedder, "warmup", None)
    if callable(warm):
        warm()
    else:
        embedder.embed(["warmup"])
    return {"embedder": embedder.name, "seconds": round(time.perf_counter() - start, 3)}


def _disk_bytes(root: Any) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass  # a LanceDB file pruned while we walked
    return total


def _memory_stats(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """Counts, disk use, LanceDB versions and fragments, embedder, key source.

    No params. Besides ``MemoryStore.stats()`` returns ``disk_bytes`` (the
    store directory), ``key_file_problem`` (why the key file's permissions
    are unsafe, or null), ``spill`` (provenance spill directory: pending
    batches of this store, quarantined files) and ``embedder_loaded``.
    """
    Params("memory_stats", params, set())
    return {
        **store.stats(),
        "disk_bytes": _disk_bytes(store.root),
        "key_file_problem": key_file_mode_problem(store.root),
        "spill": spill_state(store.store_id),
        "embedder_loaded": store.embedder is not None,
    }


def _memory_compact(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """Fold LanceDB fragments, prune old versions, checkpoint the provenance log.

    No params. Returns version and fragment counts before and after.
    """
    Params("memory_compact", params, set())
    return store.compact()


def _memory_export(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """One page of memories, in insertion order, with text and provenance.

    params: ``offset`` (default 0), ``limit`` (default 200, at most 1000).
    Returns ``records`` (see ``transfer.export_record``), ``total`` and
    ``next_offset`` (null after the last page). The text is plaintext.
    """
    p = Params("memory_export", params, {"offset", "limit"})
    offset = p.integer("offset", 0, 0, 2**62)
    limit = p.integer("limit", 200, 1, MAX_PAGE)
    records, total = export_page(store, offset, limit)
    following = offset + len(records)
    return {"records": records, "total": total, "next_offset": following if following < total else None}


def _import_item(method: str, value: Any) -> ImportItem:
    p = Params(method, value, set(EXPORT_KEYS | CAPTURE_PARAMS))
    provenance = p.values.get("provenance") or []
    if (
        not isinstance(provenance, list)
        or not all(isinstance(entry, dict) for entry in provenance)
    ):
        raise InvalidInput(f"{method}: 'provenance' must be a list of objects")
    if len(provenance) > MAX_PROVENANCE_PER_RECORD:
        raise LimitExceeded(f"{method}: at most {MAX_PROVENANCE_PER_RECORD} provenance entries")
    try:
        # allow_nan=False: NaN/Infinity would come back out of export as invalid JSON.
        json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{method}: 'provenance' must be JSON data: {exc}") from None
    return ImportItem(_capture_request(p), provenance)


def _memory_import(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """Capture a batch of exported records; every record is checked first.

    params: ``records`` (objects as ``memory_export`` writes them, at most
    1000; ``text`` is required, ``id``, ``created_at``, ``updated_at`` and
    ``reinforcements`` are ignored), ``dry_run`` (check only). Texts are
    re-embedded with this store's embedder; a record already present is
    skipped (same text, session and time) or reinforced, as in capture.
    Returns counts per status and the ``record_ids`` in input order.
    """
    p = Params("memory_import", params, {"records", "dry_run"})
    records = p.array("records", max_items=MAX_PAGE)
    dry_run = p.flag("dry_run")
    items = [_import_item(f"memory_import: records[{i}]", value) for i, value in enumerate(records)]
    counts = {"inserted": 0, "reinforced": 0, "skipped": 0}
    if dry_run or not items:
        return {**counts, "checked": len(items), "dry_run": dry_run, "record_ids": []}
    results = import_items(store, embedder_for(store), items)
    for result in results:
        counts[result.status] += 1
    return {
        **counts,
        "checked": len(items),
        "dry_run": False,
        "record_ids": [str(result.record_id) for result in results],
    }


METHODS: dict[str, Callable[[MemoryStore, Mapping[str, Any]], dict[str, Any]]] = {
    "memory_capture": _memory_capture,
    "memory_recall": _memory_recall,
    "memory_get": _memory_get,
    "memory_stats": _memory_stats,
    "memory_export": _memory_export,
    "memory_import": _memory_import,
    "memory_compact": _memory_compact,
    "session_start": _session_start,
    "warmup": _warmup,
}


def dispatch(store: MemoryStore, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``method`` with ``params`` against ``store`` and return its result."""
    handler = METHODS.get(method) if isinstance(method, str) else None
    if handler is None:
        raise UnknownMethod(f"unknown method {method!r}; known: {sorted(METHODS)}")
    return handler(store, params)
