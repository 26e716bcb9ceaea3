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
in clear while it exists; it exists only for the length of a purge (or,
when a step fails, until the next purge, automatic purge or open finishes
it: a new purge merges a leftover intent into its own, never replaces it).

A purged record must not outlive itself in the records it was linked to.
Before the rows go, ``relinked`` rewrites, in one commit, every record that
names one of them: a record the purged one superseded is active again (its
``valid_to``/``superseded_by`` cleared, a "restored" history item), and the
purged id is replaced by ``"purged"`` wherever a history detail held it
(a "superseded" item's ``superseded_by``, a "captured" item's
``supersedes``). That step is idempotent and runs while the intent stands,
so a kill at any point redoes it at the next open. Hiding a record
(restorable) keeps its links: only a purge rewrites them. Finding those rows
is one pass over the rows in memory: 88 ms at 100k records (the cached
100k bench store, where a whole ``MemoryStore.purge`` of 10 took 1.7 s).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from iai_mcp.errors import CorruptData
from iai_mcp.fs import write_atomic
from iai_mcp.log import logger
from iai_mcp.store.history import history_item
from iai_mcp.types import MemoryRow, utcnow

_log = logger("iai_mcp.store")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

INTENT_FILE = "purge.pending"
SEAL_PURPOSE = "purge-intent"
#: What a history detail says where it named a purged record.
PURGED_MARK = "purged"
#: The detail of the "restored" item a record gets when its replacement is purged.
REPLACEMENT_PURGED = "active again: the memory that replaced it was purged"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Sealer(Protocol):
    def seal(self, data: bytes) -> bytes: ...

    def open(self, blob: bytes) -> bytes: ...


class PurgeTarget(Protocol):
    """What a purge removes records from (``RecordsTable``, ``ProvenanceLog``)."""

    def purge(self, keys: Collection[int] | Collection[str]) -> int: ...


class ProvenanceTarget(PurgeTarget, Protocol):
    #: Why the log cannot be opened (damaged), or None.
    unavailable: str | None

    def refuse(self, record_ids: Collection[str]) -> None: ...


@dataclass(frozen=True)
class Intent:
    record_ids: tuple[str, ...]
    seqs: tuple[int, ...]

    def merged(self, other: Intent | None) -> Intent:
        """This intent and ``other`` (a leftover one), each record once."""
        if other is None:
            return self
        return Intent(tuple(dict.fromkeys(other.record_ids + self.record_ids)),
                      tuple(dict.fromkeys(other.seqs + self.seqs)))


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


class Purger:
    """Runs the purges of one store, given its parts: ``rows`` returns the
    store's live rows (a purged slot is a ``blank_row``), ``commit`` writes
    rewritten rows ``{slot: row}`` to the table and to memory in one commit.
    The store calls it under its lock."""

    def __init__(self, root: Path, sealer: Sealer, records: PurgeTarget, log: ProvenanceTarget, *,
                 rows: Callable[[], Sequence[MemoryRow]], commit: Callable[[dict[int, MemoryRow]], None]) -> None:
        self._root, self._sealer, self._records, self._log = root, sealer, records, log
        self._rows, self._commit = rows, commit

    def pending(self) -> Intent | None:
        """The intent an unfinished purge left, or None (an unreadable one is
        reported and left in place: the records it names were not purged)."""
        try:
            return read_intent(self._root, self._sealer)
        except CorruptData as exc:
            _log.error("purge_intent_unreadable", error=str(exc),
                       consequence="left in place; the records it names were not purged")
            return None

    def begin(self, intent: Intent) -> Intent:
        """Record ``intent`` on disk, merged with any leftover one (never
        replacing it: its records would come back at the next open), and
        refuse their provenance from now on. Returns what was recorded."""
        intent = intent.merged(self.pending())
        write_intent(self._root, self._sealer, intent)
        self._log.refuse(intent.record_ids)  # closes the race with the queue's worker
        return intent

    def finish(self) -> Intent | None:
        """Carry out the pending purge, if any: relink the records that name
        its records, then remove them. Returns the intent when it still cannot
        be carried out (disk full, a LanceDB error): one log line, the intent
        stays, and the next purge, automatic purge or open tries again; the
        caller keeps its records out of memory meanwhile."""
        intent = self.pending()
        if intent is None:
            return None
        self._log.refuse(intent.record_ids)
        try:
            relinks = relinked(self._rows(), frozenset(intent.record_ids), utcnow())
            if relinks:
                self._commit(relinks)
            if self._log.unavailable is not None:
                return self._defer(intent)
            carry_out(self._root, intent, self._records, self._log)
        except Exception as exc:  # never lost: the intent is still there
            _log.error("purge_unfinished", records=len(intent.record_ids), error=f"{type(exc).__name__}: {exc}",
                       consequence="retried at the next purge, automatic purge or open")
            return intent
        _log("purge_finished", records=len(intent.record_ids), relinked=len(relinks))
        return None

    def _defer(self, intent: Intent) -> Intent:
        """A damaged log (``unavailable``) cannot delete the entries: the rows
        go from the records table now, and the intent stays until the log is
        rebuilt (``doctor --repair`` rebuilds it first, then its open finishes
        the purge). Never a failed open: one log line, the intent returned."""
        self._records.purge(intent.seqs)
        _log.warning("purge_deferred", records=len(intent.record_ids), reason=str(self._log.unavailable)[:300],
                     consequence="removed from the records table; their provenance is removed once "
                                 "iai-mcp doctor --repair has rebuilt the log")
        return intent


def relinked(rows: Sequence[MemoryRow], gone: frozenset[str], now: datetime) -> dict[int, MemoryRow]:
    """``{slot: rewritten row}`` for every row outside ``gone`` that names a
    record of ``gone``: superseded by one (active again, with a "restored"
    item), or naming one in a history detail (the id becomes ``PURGED_MARK``).
    Idempotent: rows already rewritten name nothing and are left out. One
    pass over the rows; details are None for most of them."""
    out = {}
    for slot, row in enumerate(rows):
        if str(row.id) in gone:
            continue
        # Only a detail can name a record (ts, action and session_id cannot).
        history = [item if item.get("detail") is None else {**item, "detail": _scrubbed(item["detail"], gone)}
                   for item in row.history]
        changes: dict[str, Any] = {}
        if history != row.history:
            changes["history"] = history
        if row.superseded_by is not None and str(row.superseded_by) in gone:
            item = history_item("restored", now, detail=REPLACEMENT_PURGED)
            changes.update(valid_to=None, superseded_by=None, updated_at=now, history=[*history, item])
        if changes:
            out[slot] = replace(row, **changes)
    return out


def _scrubbed(value: Any, gone: frozenset[str]) -> Any:
    if isinstance(value, str):
        if len(value) < 36:
            return value
        return _UUID.sub(lambda m: PURGED_MARK if m.group() in gone else m.group(), value)
    if isinstance(value, dict):
        return {key: _scrubbed(item, gone) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, gone) for item in value]
    return value


def blank_row() -> MemoryRow:
    """What stays in memory in a purged record's slot until the next open:
    no id, no text, no tags; "hidden" to anything that reads ``state``."""
    return MemoryRow(
        id=UUID(int=0), tier="working", literal_surface="", aaak_index="", community_id=None,
        centrality=0.0, detail_level=0, pinned=False, stability=0.0, difficulty=0.0,
        last_reviewed=None, never_decay=False, never_merge=False, created_at=_EPOCH,
        updated_at=_EPOCH, language="", hidden_at=_EPOCH,
    )
