"""Export and import: memories as plain JSON objects, and back.

An exported record carries the verbatim text, its metadata and its
provenance. Importing re-embeds the text with this store's embedder (so an
export moves a store to another embedder) and goes through capture. A
record with an id is matched by that id alone: already stored it is skipped
(the same export imported twice changes nothing), else it is inserted under
it even when its text is stored (two memories may share a text). Provenance is restored for the
records an import inserts, and for skipped ones that have none yet (an
earlier import stored them but failed before their provenance). An inserted
record keeps its id, its creation and update times and its reinforcement
count: an export imported into an empty store gives back the same store.

The lifecycle travels too: a hidden memory keeps its undo deadline, a
superseded one its ``valid_to`` and link, every record its history. Export
leaves hidden memories out unless asked (``include_hidden``): forgetting one
takes it out of exports too. An imported record keeps its exported id
(``imported_id``), so a ``superseded_by`` link finds the record
it names in whichever import call brings that record, and an import never
creates a record it does not contain: a link to a memory that was purged (or
left out) stays a link to nothing, and the replaced memory stays replaced
rather than coming back as current. An import changes no record already in
the store (a record without an id whose text is stored folds into it as in
capture).
"""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid5

from iai_mcp.core.capture import Captured, CaptureRequest, capture_many, check_batch
from iai_mcp.core.limits import EXPORT_PAGE_BYTES
from iai_mcp.core.redact import redact_entry
from iai_mcp.core.results import ExportedRecord, memory_dict
from iai_mcp.embed import Embedder
from iai_mcp.store import STATE_CODES, MemoryStore
from iai_mcp.types import MemoryRow, ProvenanceEntry


@dataclass(frozen=True)
class ImportItem:
    request: CaptureRequest
    provenance: list[ProvenanceEntry] = field(default_factory=list)


def export_record(store: MemoryStore, row: MemoryRow) -> tuple[dict[str, Any], int]:
    """``row`` as an export line (``results.ExportedRecord``; import reads it
    back as ``contract.ImportRecord``), and how many of its provenance entries
    could not be read and were left out."""
    provenance, damaged = store.read_provenance(row.id)
    return memory_dict(row, ExportedRecord, provenance=provenance), damaged


#: Namespace of ``imported_id`` (a fixed, random UUID: never change it, or
#: a re-import would no longer recognise the ids an earlier one derived).
IMPORT_NAMESPACE = UUID("8f0c2a4e-6a55-4f37-9a3e-2b7d1c9e5f41")


def imported_id(exported: str) -> UUID:
    """The id a record exported as ``exported`` gets when imported: the same
    id, so ``show <id>`` and every link still find it after a round trip; an
    id that is not a UUID (another tool's export) is mapped to one, the same
    one each time."""
    try:
        return UUID(exported)
    except ValueError:
        return uuid5(IMPORT_NAMESPACE, exported)


def _exportable(states: Any, include_hidden: bool) -> Any:
    """Mask of the states an export holds: active and superseded records,
    hidden ones when asked; never purged slots."""
    keep = (states == STATE_CODES["active"]) | (states == STATE_CODES["superseded"])
    if include_hidden:
        keep |= states == STATE_CODES["hidden"]
    return keep


@dataclass(frozen=True)
class ExportPage:
    records: list[dict[str, Any]]
    #: Records the export holds now.
    total: int
    #: Where the next page starts, None after the last page.
    next_offset: int | None
    #: Provenance entries of this page's records that could not be read (left out).
    provenance_damaged: int = 0


def export_page(
    store: MemoryStore, offset: int, limit: int, include_hidden: bool = False,
    max_bytes: int = EXPORT_PAGE_BYTES,
) -> ExportPage:
    """Up to ``limit`` exported records, in insertion order, from insertion
    number ``offset`` on (``MemoryStore.seqs``: a keyset, not a count), and
    no more than ``max_bytes`` of JSON (one record at least): a page of long,
    much-recalled memories still fits the daemon's wire. The caller pages
    on with ``next_offset``, so an export of any size goes through.

    The position is fixed before any filtering, so a record forgotten
    (hidden or purged) between two pages shifts nothing: every record that
    was exportable when the export started and is not forgotten before its
    page is exported exactly once. Indexing a list of exportable records
    instead skipped one record per record forgotten in earlier pages. The
    position also survives the daemon reopening the store, which drops
    purged slots and so renumbers every later row.
    """
    import numpy as np

    rows, seqs = store.rows(), store.seqs()
    states = store.states()
    n = min(len(rows), len(seqs), len(states))
    keep = _exportable(states[:n], include_hidden)
    start = bisect.bisect_left(seqs, offset, 0, n)
    candidates = np.flatnonzero(keep[start:]) + start
    records: list[dict[str, Any]] = []
    scanned = size = damaged = 0
    for slot in candidates.tolist():
        if len(records) == limit:
            break
        row = rows[slot]
        # Re-checked on the row itself: it may have been forgotten since the mask.
        if (row.state != "hidden" or include_hidden) and store.row(row.id) is not None:
            record, unread = export_record(store, row)
            # Measured as the wire writes it (compact, UTF-8), plus a separator.
            cost = len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")) + 1
            if records and size + cost > max_bytes:
                break
            records.append(record)
            size += cost
            damaged += unread
        scanned += 1
    # limit >= 1, so a page that stopped early scanned at least one slot.
    next_offset = seqs[candidates[scanned - 1]] + 1 if scanned < len(candidates) else None
    return ExportPage(records, int(np.count_nonzero(keep)), next_offset, damaged)


def check_import(store: MemoryStore, items: list[ImportItem]) -> None:
    """Raise what ``import_items`` would refuse (a supersede cycle through
    the batch and the store); writes nothing. An import's dry run."""
    check_batch(store, [item.request for item in items])


def import_items(store: MemoryStore, embedder: Embedder, items: list[ImportItem]) -> list[Captured]:
    """Capture the batch (embedded together, one commit), then restore the
    provenance of the records it inserted in one log transaction. A batch
    whose ``superseded_by`` links, with those already stored, make a cycle
    is an InvalidInput naming them, and nothing is written."""
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
            # Redacted like a recall's entry (the log keeps no secrets): cue, session id, the rest.
            pairs.extend((result.record_id, redact_entry(entry)) for entry in item.provenance)
    store.append_provenance_batch(pairs)
    return results
