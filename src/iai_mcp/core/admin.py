"""Methods around the memories: session packs, warm-up, stats, export,
import and compaction. Registered in ``core.METHODS`` beside the memory
methods and reached the same way, through ``core.dispatch``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iai_mcp.core.contract import ExportParams, ImportParams, NoParams, SessionStartParams
from iai_mcp.core.redact import redact_label
from iai_mcp.core.results import PackedMemory, memory_dict
from iai_mcp.embed import embedder_for
from iai_mcp.core.session_pack import build_pack, item_fields
from iai_mcp.provenance_queue import journal_state, spill_state
from iai_mcp.store import MemoryStore
from iai_mcp.store.crypto import key_file_mode_problem
from iai_mcp.core.transfer import ImportItem, check_import, export_page, import_items
from iai_mcp.core.warmup import warm


def _session_start(store: MemoryStore, args: SessionStartParams) -> dict[str, Any]:
    """The memory pack a new session starts with (``contract.SessionStartParams``).

    The session's own memories are left out: they are already in its
    context. Returns ``results.SessionPack``: ``text`` (the rendered pack,
    empty when there is nothing to show), ``budget_used`` (estimated tokens
    of ``text``) and ``memories`` (what was packed, in order: pinned first,
    then most recently recalled, reinforced or captured).
    """
    # Session ids are stored redacted (core.capture): compare like with like.
    pack = build_pack(store, args.budget_tokens, exclude_session=redact_label(args.session_id),
                      project=args.project)
    memories = [memory_dict(item.row, PackedMemory, **item_fields(item)) for item in pack.items]
    return {"text": pack.text, "budget_used": pack.tokens, "memories": memories}


def _warmup(store: MemoryStore, args: NoParams) -> dict[str, Any]:
    """Load the embedding model and build the keyword index now, so the first
    capture or recall is fast (at 100k memories the index alone takes ~2 s).

    No params. Returns the embedder's ``name`` and the ``seconds`` it took.
    """
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


def _memory_stats(store: MemoryStore, args: NoParams) -> dict[str, Any]:
    """Counts, disk use, LanceDB versions and fragments, embedder, key source.

    No params. Besides ``MemoryStore.stats()`` returns ``disk_bytes`` (the
    store directory), ``key_file_problem`` (why the key file's permissions
    are unsafe, or null), ``spill`` (provenance spill directory: pending
    batches of this store, quarantined files), ``journal`` (provenance journal
    segments and quarantined files) and ``embedder_loaded``.
    """
    return {
        **store.stats(),
        "disk_bytes": _disk_bytes(store.root),
        "key_file_problem": key_file_mode_problem(store.root),
        "spill": spill_state(store.store_id),
        "journal": journal_state(store.journal_dir, store.store_id),
        "embedder_loaded": store.embedder is not None,
    }


def _memory_verify(store: MemoryStore, args: NoParams) -> dict[str, Any]:
    """Read every record and provenance entry once and say what is damaged
    (``MemoryStore.verify``): what doctor reports. No params."""
    return store.verify()


def _memory_compact(store: MemoryStore, args: NoParams) -> dict[str, Any]:
    """Fold LanceDB fragments, prune old versions, checkpoint the provenance log.

    No params. Returns version and fragment counts before and after.
    """
    return store.compact()


def _memory_export(store: MemoryStore, args: ExportParams) -> dict[str, Any]:
    """One page of memories, in insertion order, with text and provenance
    (``contract.ExportParams``).

    Returns ``records`` (``results.ExportedRecord``), ``total`` (records the
    export holds now) and ``next_offset`` (null after the last page): pass it
    as ``offset`` for the next page. It is a position in insertion order,
    not a count, so memories forgotten between pages shift nothing
    (``transfer.export_page``). The text is plaintext. Hidden (forgotten)
    memories only with ``include_hidden``. ``provenance_damaged``: entries of
    the page's records that could not be read, left out (doctor reports them).
    """
    page = export_page(store, args.offset, args.limit, args.include_hidden, args.max_bytes)
    return {"records": page.records, "total": page.total, "next_offset": page.next_offset,
            "provenance_damaged": page.provenance_damaged}


def _memory_import(store: MemoryStore, args: ImportParams) -> dict[str, Any]:
    """Capture a batch of exported records; every record is checked first
    (``contract.ImportParams``, each record a ``contract.ImportRecord``).

    Texts are re-embedded with this store's embedder; a record already
    present is skipped (same text, session and time) or reinforced, as in
    capture. ``superseded_by`` links that would make a cycle (within the
    batch, or through records already stored) are an InvalidInput naming
    them, dry run or not, and nothing is written. Returns counts per status
    and the ``record_ids`` in input order.
    """
    dry_run = args.dry_run
    items = [ImportItem(record.request(), record.provenance or [])
             for record in args.parse_records("memory_import")]
    counts = {"inserted": 0, "reinforced": 0, "skipped": 0}
    if dry_run and items:
        check_import(store, items)
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


ADMIN_METHODS: dict[str, Callable[[MemoryStore, Any], dict[str, Any]]] = {
    "memory_stats": _memory_stats,
    "memory_export": _memory_export,
    "memory_import": _memory_import,
    "memory_compact": _memory_compact,
    "memory_verify": _memory_verify,
    "session_start": _session_start,
    "warmup": _warmup,
}
