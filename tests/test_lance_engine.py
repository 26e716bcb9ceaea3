"""The store's driver of LanceDB's engine (``store.lance_engine``)."""
from __future__ import annotations

import types

import pyarrow as pa
import pytest

from iai_mcp.errors import StoreError
from iai_mcp.store import lance_engine
from iai_mcp.store.lance_engine import Connection

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("seq", pa.int64(), nullable=False)])


def _rows(*seqs: int) -> pa.Table:
    return pa.table({"id": [f"r{s}" for s in seqs], "seq": list(seqs)}, schema=SCHEMA)


class _Engine(types.SimpleNamespace):
    """The real extension with one piece swapped."""

    def __init__(self, **swap: object) -> None:
        real = lance_engine.load()
        super().__init__(**{name: getattr(real, name) for name in ("connect", "Connection", "Table", "Query")})
        self.__dict__.update(swap)


def _table(**swap: object) -> type:
    """A stand-in for the extension's Table (which cannot be subclassed)."""
    real = lance_engine.load().Table
    methods = {name: getattr(real, name) for name in dir(real) if not name.startswith("__")}
    return type("Table", (), {**methods, **swap})


def test_an_engine_without_a_method_the_store_uses_is_refused_by_name():
    table = _table(optimize=None)
    with pytest.raises(StoreError, match=r"Table\.optimize is missing"):
        lance_engine._check(_Engine(Table=table))


def test_an_engine_whose_method_takes_its_arguments_elsewhere_is_refused():
    """A release that reorders or renames a parameter the store passes fails
    at load, not mid-write (a purge half done)."""

    def add(self, mode, data, progress=None): ...  # positions swapped

    def optimize(self, older_than_ms=None, delete_unverified=None): ...  # renamed

    with pytest.raises(StoreError) as caught:
        lance_engine._check(_Engine(Table=_table(add=add, optimize=optimize)))
    assert "Table.add('mode', 'data', 'progress') is not Table.add(data, mode, ...)" in str(caught.value)
    assert "Table.optimize(" in str(caught.value) and "cleanup_since_ms" in str(caught.value)


def test_an_engine_call_from_the_loop_thread_itself_fails_instead_of_hanging(tmp_path):
    db = Connection(str(tmp_path))
    seen = []

    async def from_inside() -> None:
        try:
            db.create_table("records", SCHEMA)
        except RuntimeError as exc:
            seen.append(str(exc))

    lance_engine._LOOP.call(from_inside)
    assert seen == ["a LanceDB call from the engine's own loop thread"]


def test_an_engine_that_does_not_fit_is_not_reported_as_a_damaged_table(tmp_path, monkeypatch):
    """``doctor --repair`` reads the version count first; an install problem
    must not read as "restore the store from a backup"."""
    from iai_mcp.store import records_table

    Connection(str(tmp_path)).create_table("records", SCHEMA)

    def unfit(uri):
        raise StoreError("this lancedb does not fit iai-mcp")

    monkeypatch.setattr(records_table, "Connection", unfit)
    with pytest.raises(StoreError, match="does not fit") as caught:
        records_table.version_count(tmp_path)
    assert type(caught.value) is StoreError  # not CorruptData


def test_the_installed_engine_has_everything_the_store_uses():
    assert lance_engine._check(lance_engine.load()) is lance_engine.load()


def test_open_of_a_missing_table_is_a_value_error_and_create_is_idempotent(tmp_path):
    db = Connection(str(tmp_path))
    with pytest.raises(ValueError, match="not found"):
        db.open_table("records")
    first = db.create_table("records", SCHEMA)
    first.add(_rows(1, 2))
    again = db.create_table("records", SCHEMA)  # exists: opened, not replaced
    assert again.count_rows() == 2


def test_scan_has_no_default_limit_and_streams_in_batches(tmp_path):
    table = Connection(str(tmp_path)).create_table("records", SCHEMA)
    table.add(_rows(*range(50)))
    table.add(_rows(*range(50, 120)))
    batches = list(table.scan(["seq"], batch_rows=16))
    assert sorted(s for b in batches for s in b.column("seq").to_pylist()) == list(range(120))
    assert max(b.num_rows for b in batches) <= 16
    picked = [s for b in table.scan(where="seq >= 100 AND seq < 105") for s in b.column("seq").to_pylist()]
    assert sorted(picked) == [100, 101, 102, 103, 104]
    with_ids = next(iter(table.scan(["seq"], with_row_id=True)))
    assert "_rowid" in with_ids.schema.names


def test_merge_insert_replaces_inserts_and_deletes_in_one_commit(tmp_path):
    table = Connection(str(tmp_path)).create_table("records", SCHEMA)
    table.add(_rows(1, 2, 3))
    before = table.version()
    changed = pa.table({"id": ["new2", "r9"], "seq": [2, 9]}, schema=SCHEMA)
    table.merge_insert("seq", pa.RecordBatchReader.from_batches(SCHEMA, changed.to_batches()), insert_unmatched=True)
    assert table.version() == before + 1
    got = {s: i for b in table.scan() for s, i in zip(b.column("seq").to_pylist(), b.column("id").to_pylist())}
    assert got == {1: "r1", 2: "new2", 3: "r3", 9: "r9"}
    keep = pa.table({"id": ["r1"], "seq": [1]}, schema=SCHEMA)
    table.merge_insert("seq", pa.RecordBatchReader.from_batches(SCHEMA, keep.to_batches()), insert_unmatched=False,
                       delete_unmatched_where="seq IN (2, 3)")
    assert sorted(s for b in table.scan(["seq"]) for s in b.column("seq").to_pylist()) == [1, 9]


def test_optimize_leaves_one_version_and_take_reads_by_offset(tmp_path):
    table = Connection(str(tmp_path)).create_table("records", SCHEMA)
    for seq in range(4):
        table.add(_rows(seq))
    assert len(table.list_versions()) == 5 and table.fragment_count() == 4
    table.optimize(delete_unverified=True)
    assert len(table.list_versions()) == 1 and table.fragment_count() == 1
    assert table.take_offsets([1, 3]).column("seq").to_pylist() == [1, 3]


def test_the_store_can_be_driven_from_inside_a_running_event_loop(tmp_path):
    """The MCP server calls the store from its event loop's thread; the engine
    runs on its own loop, so a synchronous call there does not deadlock or
    raise "this event loop is already running"."""
    import asyncio

    async def inside() -> int:
        table = Connection(str(tmp_path)).create_table("records", SCHEMA)
        table.add(_rows(7))
        return table.count_rows()

    assert asyncio.run(inside()) == 1
