"""The LanceDB table that holds the records, sealed.

One row per record. Only the id, the insertion sequence and the creation
time are in the clear; everything a user said, and the vector derived from
it, is sealed (see ``crypto``). Recall never asks LanceDB to search: the
store decrypts the table once at open and ranks over memory (numpy over
100k x 384 takes about 10 ms where a LanceDB flat scan took 208 ms, and an
ANN index cannot work on sealed vectors anyway). LanceDB is the durable,
versioned, append-friendly home of the rows.

Every write makes a LanceDB version and a small fragment; ``compact`` folds
them and prunes old versions so the directory stays bounded.

``purge`` removes rows so that no file of the table holds their bytes any
more. A LanceDB delete only marks rows in a deletion file, and ``optimize``
rewrites a fragment only when at least 10% of it is deleted (lance's
``materialize_deletions_threshold``, which lancedb's ``optimize`` does not
expose): deleting 10 rows of the cached 100k bench store and optimizing left
their sealed payloads in the fragment file. So purge rewrites the rest of
every fragment that held a purged row, in the same commit as the delete
(``merge_insert``): each such fragment then holds no live row, and the
cleanup that follows removes its file with every old version. The cleanup
rewrites nothing more (the new fragment has no deleted row): 0.01-0.02 s.

Purging 10 records of that 100k store (one 200 MB fragment; the copy,
``RecordsTable.purge`` alone, measured with a script over
``/root/.cache/iai-mcp-bench/stores/synthetic-v1-s20260501-p10000-100000``):
0.6-2.1 s on a shared 2-core machine (5 runs each), peak RSS 780-950 MB
against 185 MB before, with the fragment-mates streamed into
``merge_insert``; loading them first as one Arrow table, as this module did,
peaked at 970-1005 MB. Most of the peak is ``merge_insert``'s own join,
which no public option bounds. A row in a recent small fragment costs
milliseconds.
``python -m bench.recall_latency --forget 0.1`` reports the figure on real
stores (``forget_ms``).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from iai_mcp.errors import CorruptData, StoreError
from iai_mcp.log import logger
from iai_mcp.store.damage import Damage, read_ranges
from iai_mcp.store.lance_engine import Connection, Table

_log = logger("iai_mcp.store")

TABLE = "records"

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("created_us", pa.int64(), nullable=False),
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("vector", pa.binary(), nullable=False),
    ]
)


@dataclass(frozen=True)
class SealedRow:
    id: str
    seq: int
    created_us: int
    payload: bytes
    vector: bytes


def version_count(root: Path) -> int:
    """Versions of the records table under ``root``, read without opening the
    store (no key, no owner lock): what ``doctor --repair`` reports before it
    compacts. 0 when there is no table yet; CorruptData when LanceDB cannot
    read it."""
    if not (root / f"{TABLE}.lance").is_dir():
        return 0
    try:
        return len(Connection(str(root)).open_table(TABLE).list_versions())
    except StoreError:
        raise  # the installed lancedb, not the table: see lance_engine.load
    except Exception as exc:  # LanceDB reports damage as RuntimeError, ValueError, OSError...
        raise CorruptData(f"the records table in {root} cannot be read ({type(exc).__name__}: {exc})") from None


class RecordsTable:
    """The table of one store. With ``create`` False (the store has committed
    before) a missing table is not created anew: ``version()`` is then None and
    the store refuses to open (``meta.check_expected``) instead of showing an
    empty store. A ``read_only`` table never creates one. ``on_commit(version,
    rows)`` runs after every commit, so the store can record what the table
    must hold from then on."""

    def __init__(self, root: Path, *, read_only: bool = False, create: bool = True,
                 on_commit: Callable[[int, int], None] | None = None) -> None:
        self._db = Connection(str(root))
        self._on_commit = on_commit
        #: Rows the last ``scan`` could not read (a damaged fragment).
        self.damage = Damage()
        # Data files with no manifest to name them: never a fresh table over them.
        create = create and not read_only and not any((root / f"{TABLE}.lance" / "data").glob("*.lance"))
        try:
            self._table: Table | None = self._db.open_table(TABLE)
        except ValueError:  # LanceDB's "was not found"
            self._table = self._db.create_table(TABLE, SCHEMA) if create else None

    def version(self) -> int | None:
        """The table's current version; None when it could not be found."""
        return None if self._table is None else self._table.version()

    def _committed(self) -> None:
        if self._on_commit is not None:
            self._on_commit(self._table.version(), self._table.count_rows())

    def _batch(self, rows: list[SealedRow]) -> pa.Table:
        return pa.Table.from_pydict(
            {
                "id": [r.id for r in rows],
                "seq": [r.seq for r in rows],
                "created_us": [r.created_us for r in rows],
                "payload": [r.payload for r in rows],
                "vector": [r.vector for r in rows],
            },
            schema=SCHEMA,
        )

    def append(self, rows: list[SealedRow]) -> None:
        """Add rows in one commit (one version, one fragment)."""
        if rows:
            self._table.add(self._batch(rows))
            self._committed()

    def replace(self, rows: list[SealedRow]) -> None:
        """Rewrite existing rows by id in one commit (no filter strings built)."""
        if rows:
            batch = self._batch(rows)
            self._table.merge_insert("id", pa.RecordBatchReader.from_batches(SCHEMA, batch.to_batches()),
                                     insert_unmatched=True)
            self._committed()

    def scan(self, batch_rows: int = 4096) -> Iterator[SealedRow]:
        """Every row that can be read, in ``seq`` order (in storage, a rewritten
        row moves to a newer fragment).

        Streamed batch by batch: materialising the table (``to_arrow``) and
        sorting it held two copies of every sealed row at once and, through
        Arrow's allocator, kept that memory after the open (1.3 GB resident
        for 100k records, against ~0.5 GB streamed).

        One query per range of ``batch_rows`` seqs (found from the ``seq``
        column alone, 0.01 s at 100k): a single streamed scan let lance read
        the whole fragment ahead, a transient of ~300 MB at 100k records
        (VmHWM 410 MB for the bare scan of the cached 100k bench store, 202 MB
        by ranges, both 0.42 s; issue 14).

        When a read fails (a damaged data file), the rest is read by row
        offset around the damage (``damage.read_ranges``, in storage order):
        rows already given are not given twice, and ``self.damage`` counts the
        rows that cannot be read.
        """
        self.damage = Damage()
        seen: set[int] = set()
        try:
            for row in self._scan_by_seq(batch_rows):
                seen.add(row.seq)
                yield row
        except Exception as exc:  # LanceDB reports a damaged file as ValueError, OSError, RuntimeError...
            _log.warning("records_scan_failed", error=f"{type(exc).__name__}: {exc}"[:300],
                         consequence="reading the rest row range by row range")
            for row in read_ranges(self._take, 0, self.count(), self.damage, batch_rows):
                if row.seq not in seen:
                    yield row
            if self.damage.rows:
                _log.warning("records_damaged", rows=self.damage.rows, error=self.damage.errors[0])

    def _scan_by_seq(self, batch_rows: int) -> Iterator[SealedRow]:
        seqs = np.sort(np.concatenate([np.empty(0, np.int64)]
                                      + [b.column("seq").to_numpy() for b in self._table.scan(["seq"])]))
        starts = [int(s) for s in seqs[::batch_rows]]
        for lo, hi in zip(starts, [*starts[1:], None]):
            where = f"seq >= {lo}" if hi is None else f"seq >= {lo} AND seq < {hi}"
            # Sorted here, 4,096 rows at a time: rows out of seq order made the
            # open reorder the whole vector matrix through a full copy of it.
            yield from _rows(pa.Table.from_batches(list(self._table.scan(where=where)), schema=SCHEMA), by_seq=True)
        pa.default_memory_pool().release_unused()

    def _take(self, lo: int, hi: int) -> list[SealedRow]:
        return list(_rows(self._table.take_offsets(list(range(lo, hi)))))

    def count(self) -> int:
        return self._table.count_rows()

    def version_count(self) -> int:
        return len(self._table.list_versions())

    def readable_version_count(self) -> int | None:
        """``version_count``, or None when an old manifest cannot be read: the
        newest version still serves, and ``doctor`` reports (and ``--repair``
        salvages) the damaged history, so opening must not fail on it."""
        try:
            return self.version_count()
        except Exception as exc:  # LanceDB reports damage as RuntimeError, ValueError, OSError...
            _log.warning("version_history_unreadable", error=f"{type(exc).__name__}: {exc}",
                         consequence="no compaction until iai-mcp doctor --repair")
            return None

    def fragment_count(self) -> int:
        return self._table.fragment_count()

    def compact(self) -> dict[str, Any]:
        """Fold small fragments and drop every version but the newest."""
        before = (self.version_count(), self.fragment_count())
        self._table.optimize()  # every old version goes: this process is the table's only user
        self._committed()
        return {
            "versions_before": before[0],
            "fragments_before": before[1],
            "versions_after": self.version_count(),
            "fragments_after": self.fragment_count(),
        }

    def purge(self, seqs: Collection[int]) -> int:
        """Remove the rows with these ``seq``s from every file of the table:
        one commit that deletes them and rewrites their fragment-mates, then a
        cleanup of every old version and unreferenced file. Idempotent (rows
        already gone are ignored); returns how many rows it removed.

        Rows are chosen by ``seq`` (an integer we assign), never by id, so no
        filter string or transaction file names a record id.
        """
        targets = sorted({int(s) for s in seqs})
        removed = 0
        if targets:
            fragments = _target_fragments(self._table, targets)
            removed = len(fragments)  # {seq: fragment} of the targets present
            if removed:  # else an earlier run removed them; only the cleanup is left
                self._commit_purge(targets, _fragment_mates(self._table, targets, set(fragments.values())))
        self.cleanup()
        return removed

    def _commit_purge(self, targets: list[int], mates: pa.RecordBatchReader) -> None:
        """One commit: the targets deleted, their fragment-mates (streamed) rewritten."""
        gone = f"seq IN ({','.join(map(str, targets))})"
        self._table.merge_insert("seq", mates, insert_unmatched=False, delete_unmatched_where=gone)

    def cleanup(self) -> None:
        """Fold fragments and delete every old version and every file no
        version references (including what a killed write left). Safe only
        because this process owns the store (its flock) and so the table."""
        self._table.optimize(delete_unverified=True)
        self._committed()


def _rows(table: pa.Table, *, by_seq: bool = False) -> Iterator[SealedRow]:
    """The table's rows, in storage order or sorted by ``seq``."""
    cols = {name: table.column(name).to_pylist() for name in SCHEMA.names}
    order = range(table.num_rows)
    if by_seq:
        order = np.argsort(np.asarray(cols["seq"], dtype=np.int64), kind="stable").tolist()
    for i in order:
        yield SealedRow(cols["id"][i], cols["seq"][i], cols["created_us"][i], cols["payload"][i], cols["vector"][i])


def _target_fragments(table: Table, targets: list[int]) -> dict[int, int]:
    """``{seq: fragment}`` of the targets still present, from one streamed
    pass over the seq column only.

    Relies on LanceDB's ``_rowid`` being the row address (fragment id in the
    high 32 bits), which holds for tables without stable row ids (this table
    never enables them). Should that change, the raw-bytes purge test
    (tests/test_purge.py) fails rather than purge silently leaving bytes.
    """
    wanted = np.asarray(targets, dtype=np.int64)
    found: dict[int, int] = {}
    for batch in table.scan(["seq"], with_row_id=True, batch_rows=65536):
        seqs = batch.column("seq").to_numpy()
        hit = np.isin(seqs, wanted)
        if hit.any():
            fragments = batch.column("_rowid").to_numpy()[hit] >> 32
            found.update(zip(seqs[hit].tolist(), fragments.tolist()))
    return found


def _fragment_mates(table: Table, targets: list[int], fragments: Collection[int]) -> pa.RecordBatchReader:
    """The other rows of ``fragments``, streamed batch by batch (the table is
    read at the version current when ``merge_insert`` starts consuming them)."""
    wanted = np.asarray(targets, dtype=np.int64)
    held = np.asarray(sorted(fragments), dtype=np.uint64)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in table.scan(with_row_id=True, batch_rows=4096):
            mate = np.isin(batch.column("_rowid").to_numpy() >> 32, held)
            mate &= ~np.isin(batch.column("seq").to_numpy(), wanted)
            if mate.any():
                yield batch.filter(pa.array(mate)).select(SCHEMA.names).cast(SCHEMA)

    return pa.RecordBatchReader.from_batches(SCHEMA, batches())
