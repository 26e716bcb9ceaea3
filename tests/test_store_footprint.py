"""What an open store holds in memory (issue 14, footprint): the open reads
the table in small ranges, and the slots find a record by id and by text
through compact tables instead of two dicts of 100k keys."""
from __future__ import annotations

from iai_mcp.store import OPEN_BATCH_ROWS, MemoryStore
from iai_mcp.store.records_table import RecordsTable


def test_the_open_reads_the_table_in_ranges_of_at_most_1024_rows(tmp_path, fake_embedder, monkeypatch):
    """Ranges of 4,096 rows held ~40 MB more at the open's peak of a 100k
    store (``OPEN_BATCH_ROWS``); every row still arrives."""
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
