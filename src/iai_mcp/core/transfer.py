"""Export and import: memories as plain JSON objects, and back.

An exported record carries the verbatim text, its metadata and its
provenance. Importing re-embeds the text with this store's embedder (so an
export moves a store to another embedder) and goes through capture, so a
record already present is skipped (same text, session and time) and the
same export imported twice changes nothing. Provenance is restored for the
records an import inserts, and for skipped ones that have none yet (an
earlier import stored them but failed before their provenance); reinforcement
counts and creation times start afresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iai_mcp.core.capture import CaptureRequest, Captured, capture_many
from iai_mcp.core.redact import redact
from iai_mcp.core.results import ExportedRecord, memory_dict
from iai_mcp.embed import Embedder
from iai_mcp.store import MemoryStore
from iai_mcp.types import MemoryRow, ProvenanceEntry


@dataclass(frozen=True)
class ImportItem:
    request: CaptureRequest
    provenance: list[ProvenanceEntry] = field(default_factory=list)


def export_record(store: MemoryStore, row: MemoryRow) -> dict[str, Any]:
    """``row`` as an export line (``results.ExportedRecord``; import reads it
    back as ``contract.ImportRecord``)."""
    return memory_dict(row, ExportedRecord, provenance=store.provenance_of(row.id))


def export_page(store: MemoryStore, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Records ``offset`` to ``offset + limit`` in insertion order, and the total."""
    rows = store.rows()
    total = len(rows)
    return [export_record(store, row) for row in rows[offset:offset + limit]], total


def _redacted_cue(entry: dict[str, Any]) -> dict[str, Any]:
    """An imported cue is redacted like a recall's (the log keeps no secrets)."""
    cue = entry.get("cue")
    return {**entry, "cue": redact(cue).text} if isinstance(cue, str) else entry


def import_items(store: MemoryStore, embedder: Embedder, items: list[ImportItem]) -> list[Captured]:
    """Capture the batch (embedded together, one commit), then restore the
    provenance of the records it inserted in one log transaction."""
    results = capture_many(store, embedder, [item.request for item in items])
    pairs = []
    restored: set[Any] = set()
    for item, result in zip(items, results, strict=True):
        if not item.provenance or result.record_id in restored:
            continue
        # A "skipped" record with no provenance was inserted by an earlier
        # import whose provenance append failed: this re-import restores it.
        if result.status == "inserted" or (
            result.status == "skipped" and not store.provenance_of(result.record_id)
        ):
            restored.add(result.record_id)
            pairs.extend((result.record_id, _redacted_cue(entry)) for entry in item.provenance)
    store.append_provenance_batch(pairs)
    return results
