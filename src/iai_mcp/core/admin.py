"""Methods around the memories: session packs, warm-up, stats, export,
import and compaction. Registered in ``core.METHODS`` beside the memory
methods and reached the same way, through ``core.dispatch``.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from iai_mcp.embed import embedder_for
from iai_mcp.errors import InvalidInput, LimitExceeded
from iai_mcp.core.params import (
    CAPTURE_PARAMS,
    MAX_BUDGET_TOKENS,
    MAX_PAGE,
    MAX_PROVENANCE_PER_RECORD,
    SESSION_PACK_TOKENS,
    Params,
    capture_request,
    row_summary,
)
from iai_mcp.core.session_pack import build_pack
from iai_mcp.provenance_queue.journal import journal_state
from iai_mcp.provenance_queue.spill import spill_state
from iai_mcp.store import MemoryStore
from iai_mcp.store.crypto import key_file_mode_problem
from iai_mcp.core.transfer import EXPORT_KEYS, ImportItem, export_page, import_items
from iai_mcp.core.warmup import warm


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
        {**row_summary(item.row), "pinned": item.row.pinned, "why": item.why, "at": item.at.isoformat()}
        for item in pack.items
    ]
    return {"text": pack.text, "budget_used": pack.tokens, "memories": memories}


def _warmup(store: MemoryStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """Load the embedding model and build the keyword index now, so the first
    capture or recall is fast (at 100k memories the index alone takes ~2 s).

    No params. Returns the embedder's ``name`` and the ``seconds`` it took.
    """
    Params("warmup", params, set())
    return warm(store)  # the daemon's start-up thread warms through the same function


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
    batches of this store, quarantined files), ``journal`` (provenance journal
    segments and quarantined files) and ``embedder_loaded``.
    """
    Params("memory_stats", params, set())
    return {
        **store.stats(),
        "disk_bytes": _disk_bytes(store.root),
        "key_file_problem": key_file_mode_problem(store.root),
        "spill": spill_state(store.store_id),
        "journal": journal_state(store.journal_dir, store.store_id),
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
    return ImportItem(capture_request(p), provenance)


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


ADMIN_METHODS: dict[str, Callable[[MemoryStore, Mapping[str, Any]], dict[str, Any]]] = {
    "memory_stats": _memory_stats,
    "memory_export": _memory_export,
    "memory_import": _memory_import,
    "memory_compact": _memory_compact,
    "session_start": _session_start,
    "warmup": _warmup,
}
