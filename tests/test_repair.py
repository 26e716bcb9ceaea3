"""doctor --repair on a damaged records table: it says what is wrong and never ends in a traceback."""
from __future__ import annotations

from iai_mcp.core.repair import repair
from iai_mcp.store import MemoryStore
from tests.test_store import _make


def _damage_the_newest_manifest(root):
    manifests = sorted((root / "records.lance" / "_versions").glob("*.manifest"))
    manifests[-1].write_bytes(b"\x00garbage, not a lance manifest\x00" * 8)


def test_repair_reports_a_table_it_cannot_read_instead_of_crashing(tmp_path):
    store = MemoryStore(path=tmp_path)
    for i in range(3):
        store.insert(_make(text=f"memory {i}"))
    store.close()
    _damage_the_newest_manifest(tmp_path)

    planned = repair(tmp_path, apply=False)
    assert any("cannot be read" in line and "backup" in line for line in planned), planned
    done = repair(tmp_path, apply=True)
    assert any(line.startswith("skipped replay and compaction") for line in done), done
