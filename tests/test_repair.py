"""doctor --repair on a damaged records table: it says what is wrong, salvages
what can be read and never ends in a traceback (more in tests/test_damage.py)."""
from __future__ import annotations

from iai_mcp.core.repair import repair
from iai_mcp.store import MemoryStore
from tests.test_store import _make


def _damage_the_oldest_manifest(root):
    # Manifest names count down from 2**64 (LanceDB's v2 paths): the largest name is version 1.
    manifests = sorted((root / "records.lance" / "_versions").glob("*.manifest"))
    manifests[-1].write_bytes(b"\x00garbage, not a lance manifest\x00" * 8)


def test_repair_salvages_a_table_whose_history_cannot_be_read(tmp_path):
    root = tmp_path / "s"
    store = MemoryStore(path=root)
    records = [_make(text=f"memory {i}") for i in range(3)]
    for record in records:
        store.insert(record)
    store.close()
    _damage_the_oldest_manifest(root)

    planned = repair(root, apply=False)
    assert any("version history cannot be read" in line and "would salvage" in line for line in planned), planned
    done = repair(root, apply=True)
    assert any(line.startswith("salvaged the store into a fresh one: 3 record(s) copied") for line in done), done
    (aside,) = tmp_path.glob("s.damaged-*")
    assert (aside / "records.lance").is_dir()  # moved aside, never deleted
    with MemoryStore(path=root) as salvaged:
        assert sorted(r.literal_surface for r in salvaged.rows()) == [f"memory {i}" for i in range(3)]
        assert salvaged.stats()["versions"] == 1
