"""What an open store holds in memory (issue 14, footprint): the open reads
the table in small ranges, and the slots find a record by id and by text
through compact tables instead of two dicts of 100k keys."""
from __future__ import annotations

import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iai_mcp.store import OPEN_BATCH_ROWS, MemoryStore
from iai_mcp.store.records_table import RecordsTable
from iai_mcp.store.slot_index import SlotIndex


def test_the_open_reads_the_table_in_ranges_of_at_most_1024_rows(tmp_path, fake_embedder, monkeypatch):
    """Ranges of 4,096 rows held ~40 MB more at the peak of a 100k store's
    open (VmHWM 357 vs 317 MB, ``OPEN_BATCH_ROWS``); every row still arrives."""
    asked: list[int] = []
    scan = RecordsTable.scan

    def spy(self, batch_rows: int = 4096):
        asked.append(batch_rows)
        return scan(self, batch_rows)

    from iai_mcp.core import dispatch

    with MemoryStore(path=tmp_path / "s", embedder=fake_embedder) as store:
        for i in range(5):
            dispatch(store, "memory_capture", {"text": f"note {i} about the roof"})
    monkeypatch.setattr(RecordsTable, "scan", spy)
    with MemoryStore(path=tmp_path / "s", embedder=fake_embedder, read_only=True) as store:
        assert len(store) == 5
    assert asked and all(rows <= 1024 for rows in asked) and OPEN_BATCH_ROWS <= 1024


# ---------------------------------------------------------------- SlotIndex


class _Key:
    """A key whose hash the test chooses: many keys on one hash force long
    probe chains, removal markers inside them, and rebuilds."""

    __slots__ = ("name", "hashed")

    def __init__(self, name: str, hashed: int) -> None:
        self.name, self.hashed = name, hashed

    def __hash__(self) -> int:
        return self.hashed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.name == self.name


class _Row:
    __slots__ = ("key",)

    def __init__(self, key: _Key) -> None:
        self.key = key


_NAMES = st.sampled_from([f"k{i}" for i in range(40)])
_OPS = st.lists(st.tuples(st.sampled_from(["set", "pop", "del", "setdefault", "get", "in"]), _NAMES),
                max_size=300)


@settings(max_examples=150, deadline=None)
@given(ops=_OPS, buckets=st.sampled_from([1, 3, 1 << 40]))
def test_slot_index_answers_as_the_dict_it_replaced(ops, buckets):
    """Every operation the slots (and tests) use, in any order, answers as a dict does,
    whether keys collide (one hash for all, or three) or not; a fresh key
    object equal to a stored one finds its entry."""
    rows: list[_Row] = []
    index, model = SlotIndex(rows, "key"), {}
    for op, name in ops:
        key = _Key(name, sum(map(ord, name)) % buckets)
        probe = _Key(name, key.hashed)  # equal, not identical
        if op in ("set", "setdefault"):
            rows.append(_Row(key))  # an entry names a slot whose row holds its key
            slot = len(rows) - 1
            if op == "set":
                index[key] = slot
                model[key.name] = slot
            else:
                assert index.setdefault(key, slot) == model.setdefault(key.name, slot)
        elif op == "pop":
            assert index.pop(probe, None) == model.pop(name, None)
        elif op == "del":
            if name in model:
                del index[probe]
                del model[name]
            else:
                with pytest.raises(KeyError):
                    del index[probe]
        elif op == "get":
            assert index.get(probe) == model.get(name)
            if name in model:
                assert index[probe] == model[name]
            else:
                with pytest.raises(KeyError):
                    index[probe]
        else:
            assert (probe in index) == (name in model)
        assert len(index) == len(model)
    for name, slot in model.items():
        assert index.get(_Key(name, sum(map(ord, name)) % buckets)) == slot


def test_the_id_and_text_tables_take_4_bytes_a_slot_not_a_dict_entry():
    """An open store's id and text lookups take at most 16 bytes a row each
    (4-byte slots, the table sized to a power of two at least twice the
    slots the open expects): the dicts they replaced took ~100 (entry,
    table, an int object per slot; 7.7 + 6.3 MB at 100k records)."""
    import dataclasses
    from uuid import uuid4

    import numpy as np

    from iai_mcp.store.purge import blank_row
    from iai_mcp.store.sealed_vectors import BLOB_BYTES
    from iai_mcp.store.slots import Slots
    from iai_mcp.types import EMBED_DIM

    n = 5_000
    rows = [dataclasses.replace(blank_row(), id=uuid4(), literal_surface=f"note {i}", hidden_at=None)
            for i in range(n)]
    vector, blob = np.ones(EMBED_DIM, dtype=np.float32), bytes(BLOB_BYTES)
    slots = Slots.load(n, ((row, vector, blob, i) for i, row in enumerate(rows)))
    try:
        assert sys.getsizeof(slots.index_of) <= 16 * n and sys.getsizeof(slots.by_text) <= 16 * n
        assert all(slots.index_of.get(row.id) == i and slots.by_text.get(row.literal_surface) == i
                   for i, row in enumerate(rows))
    finally:
        slots.sealed.close()


def test_the_store_finds_records_by_id_and_text_through_purges_and_reopens(tmp_path, fake_embedder):
    """The store's lookups over the slot tables: by id (row, get, a second
    insert of an id refused), by text (find_identical prefers the active
    record; a purge hands the text to the other record that holds it), and
    the same after a reopen."""
    from iai_mcp.errors import InvalidInput
    from tests.test_row_sharing import _record

    root = tmp_path / "s"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        records = [_record(i) for i in range(300)]
        store.insert_many(records)
        twin = _record(7, literal_surface=records[7].literal_surface)  # the same text again
        store.insert_many([twin])
        assert store.find_identical(records[7].literal_surface).id == records[7].id
        store.update(records[7].id, hidden_at=records[7].created_at)  # forgotten: still found by text
        assert store.find_identical(records[7].literal_surface).id == records[7].id
        store.purge([records[7].id, records[8].id])
        assert store.row(records[7].id) is None and store.get(str(records[8].id)) is None
        assert store.find_identical(records[7].literal_surface).id == twin.id
        assert store.find_identical(records[8].literal_surface) is None
        with pytest.raises(InvalidInput):
            store.insert_many([records[9]])
        assert all(store.row(r.id).id == r.id for r in records[9:])
        assert all(store.find_identical(r.literal_surface).id == r.id for r in records[9:])
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        assert store.find_identical(records[7].literal_surface).id == twin.id
        assert store.row(records[8].id) is None and len(store) == 299
        assert all(store.find_identical(r.literal_surface).id == r.id for r in records[9:])


def test_lookups_beside_inserts_never_miss_a_record_already_there(tmp_path, fake_embedder):
    """The provenance queue asks whether a record exists without the store's
    lock: while captures grow the tables (rebuilding them), a record that
    was there before is always found."""
    from tests.test_row_sharing import _record

    with MemoryStore(path=tmp_path / "s", embedder=fake_embedder) as store:
        first = [_record(i) for i in range(50)]
        store.insert_many(first)
        misses: list[str] = []
        done = threading.Event()

        def look() -> None:
            while not done.is_set():
                for record in first:
                    if store.row(record.id) is None or store.find_identical(record.literal_surface) is None:
                        misses.append(str(record.id))

        reader = threading.Thread(target=look)
        reader.start()
        try:
            # Past two thirds of the 2,048 positions an empty store's tables start with: a rebuild.
            for start in range(50, 1450, 200):
                store.insert_many([_record(i) for i in range(start, start + 200)])
        finally:
            done.set()
            reader.join(timeout=30)
        assert not misses and len(store) == 1450
        assert len(store._slots.index_of._table) > 2048 and len(store._slots.by_text._table) > 2048


def test_rows_read_out_of_seq_order_are_slotted_in_capture_order():
    """Rows a damaged-file read gives in storage order (a rewritten row sits
    in a newer fragment) take their slots in ``seq`` order: rows, seqs,
    vectors, and the id and text tables all agree."""
    import dataclasses
    from uuid import uuid4

    import numpy as np

    from iai_mcp.store.purge import blank_row
    from iai_mcp.store.sealed_vectors import BLOB_BYTES
    from iai_mcp.store.slots import Slots
    from iai_mcp.types import EMBED_DIM

    n = 300
    rows = [dataclasses.replace(blank_row(), id=uuid4(), literal_surface=f"note {i}", hidden_at=None)
            for i in range(n)]
    vectors = np.random.default_rng(1).standard_normal((n, EMBED_DIM)).astype(np.float32)
    shuffled = np.random.default_rng(2).permutation(n)
    seqs = 10 * np.arange(n) + 5  # gaps, as purges leave
    slots = Slots.load(n, ((rows[i], vectors[i], bytes(BLOB_BYTES), int(seqs[i])) for i in shuffled.tolist()))
    try:
        assert list(slots.seqs) == seqs.tolist() and type(slots.seqs[0]) is int
        assert [row.id for row in slots.rows] == [row.id for row in rows]
        assert all(slots.index_of.get(row.id) == i and slots.by_text.get(row.literal_surface) == i
                   for i, row in enumerate(rows))
        assert np.allclose(slots.norms[:n], np.linalg.norm(vectors, axis=1))
    finally:
        slots.sealed.close()
