"""Purge: remove records from every file of a store, surviving ``kill -9``.

A purge touches two files that cannot commit together: the records table
(``RecordsTable.purge``: one LanceDB commit, then a cleanup of old versions)
and the provenance log (``ProvenanceLog.purge``: one SQLite transaction, then
a WAL truncation). So that a purge killed between them still ends "after",
never "half", it first writes an intent (``purge.pending``: the records'
ids and seqs, sealed with the store's key, fsynced and renamed into place),
then does both steps, then removes the intent. A store that opens with an
intent in place runs it again before it reads a single row (every step is
idempotent), so the next open never sees a purged record, its text, its
vector or its provenance, whatever point the kill came at.

The intent is sealed like everything else, so it does not name the records
in clear while it exists; it exists only for the length of a purge.
"""
from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from uuid import UUID

from iai_mcp.errors import CorruptData
from iai_mcp.fs import write_atomic
from iai_mcp.log import logger
from iai_mcp.types import MemoryRow

_log = logger("iai_mcp.store")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

INTENT_FILE = "purge.pending"
SEAL_PURPOSE = "purge-intent"


class Sealer(Protocol):
    def seal(self, data: bytes) -> bytes: ...

    def open(self, blob: bytes) -> bytes: ...


class PurgeTarget(Protocol):
    """What a purge removes records from (``RecordsTable``, ``ProvenanceLog``)."""

    def purge(self, keys: Collection[int] | Collection[str]) -> int: ...


class ProvenanceTarget(PurgeTarget, Protocol):
    def refuse(self, record_ids: Collection[str]) -> None: ...


@dataclass(frozen=True)
class Intent:
    record_ids: tuple[str, ...]
    seqs: tuple[int, ...]


def write_intent(root: Path, sealer: Sealer, intent: Intent) -> None:
    body = json.dumps({"ids": list(intent.record_ids), "seqs": list(intent.seqs)}).encode()
    write_atomic(root / INTENT_FILE, sealer.seal(body))  # fsynced: it must outlive an OS crash too


def read_intent(root: Path, sealer: Sealer) -> Intent | None:
    """The intent a purge left, or None; CorruptData if it cannot be read."""
    try:
        blob = (root / INTENT_FILE).read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(sealer.open(blob))
        return Intent(tuple(str(i) for i in data["ids"]), tuple(int(s) for s in data["seqs"]))
    except (CorruptData, ValueError, KeyError, TypeError) as exc:
        raise CorruptData(f"{root / INTENT_FILE} cannot be read ({exc})") from None


def clear_intent(root: Path) -> None:
    (root / INTENT_FILE).unlink(missing_ok=True)


def carry_out(root: Path, intent: Intent, records: PurgeTarget, log: PurgeTarget) -> None:
    """Remove the intent's records from the provenance log and the records
    table, then drop the intent. Provenance first: a kill after it leaves
    rows whose provenance is gone, which the intent then finishes removing;
    the other order would leave, for a moment, entries naming a record id
    that no longer exists."""
    log.purge(intent.record_ids)
    records.purge(intent.seqs)
    clear_intent(root)


def finish(root: Path, sealer: Sealer, records: PurgeTarget, log: ProvenanceTarget) -> Intent | None:
    """Carry out the purge an intent left in ``root``, if any. Returns the
    intent when it still cannot be carried out (disk full, a LanceDB error):
    one log line, the intent stays, and the next purge or open tries again;
    the caller keeps its records out of memory meanwhile."""
    try:
        intent = read_intent(root, sealer)
    except CorruptData as exc:
        _log.error("purge_intent_unreadable", error=str(exc),
                   consequence="left in place; the records it names were not purged")
        return None
    if intent is None:
        return None
    log.refuse(intent.record_ids)
    try:
        carry_out(root, intent, records, log)
    except Exception as exc:  # never lost: the intent is still there
        _log.error("purge_unfinished", records=len(intent.record_ids), error=f"{type(exc).__name__}: {exc}",
                   consequence="retried at the next purge or open")
        return intent
    _log("purge_finished", records=len(intent.record_ids))
    return None


def blank_row() -> MemoryRow:
    """What stays in memory in a purged record's slot until the next open:
    no id, no text, no tags; "hidden" to anything that reads ``state``."""
    return MemoryRow(
        id=UUID(int=0), tier="working", literal_surface="", aaak_index="", community_id=None,
        centrality=0.0, detail_level=0, pinned=False, stability=0.0, difficulty=0.0,
        last_reviewed=None, never_decay=False, never_merge=False, created_at=_EPOCH,
        updated_at=_EPOCH, language="", hidden_at=_EPOCH,
    )
