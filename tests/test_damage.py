"""Damage stays local and visible (issue 13, item 3).

Each damage is made for real on a real store in tmp: a flipped byte in a
LanceDB data file, a deleted manifest, a flipped byte in a sealed provenance
row (through sqlite), a damaged SQLite page. What can be read is served,
what cannot is counted and reported, a store that is behind what it last
committed is refused, and ``doctor --repair`` salvages without a traceback.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.repair import repair
from iai_mcp.errors import StoreBehind
from iai_mcp.store import MemoryStore
from tests.test_store import _make

ENTRIES_PER_RECORD = 2


def _store(root: Path, embedder=None) -> list[list]:
    """A closed store of three commits of five records (three fragments,
    three data files), each record with two provenance entries, the log
    checkpointed into its main file."""
    batches = [[_make(text=f"memory {b}-{i}") for i in range(5)] for b in range(3)]
    store = MemoryStore(path=root, embedder=embedder, compact_every=0)
    for batch in batches:
        store.insert_many(batch)
    store.append_provenance_batch([(r.id, {"cue": f"cue {n} of {r.literal_surface}"})
                                   for batch in batches for r in batch for n in range(ENTRIES_PER_RECORD)])
    store._log.checkpoint()  # what close leaves in the WAL is in the main file: page damage lands
    store.close()
    return batches


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _flip_a_data_file_footer(root: Path) -> None:
    """Byte -5 is in the footer's format version: LanceDB then says
    ``Unknown Lance storage version`` for every read of that fragment."""
    _flip(sorted((root / "records.lance" / "data").glob("*.lance"))[0], -5)


def _manifests(root: Path) -> list[Path]:
    # v2 manifest names count down from 2**64: the smallest name is the newest version.
    return sorted((root / "records.lance" / "_versions").glob("*.manifest"))


def _texts(store: MemoryStore) -> set[str]:
    return {row.literal_surface for row in store.rows()}


def _log_lines(err: str, event: str) -> list[dict]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


# --------------------------------------------------- a damaged LanceDB data file


def test_a_flipped_byte_in_a_data_file_leaves_the_rest_served_and_counted(tmp_path, capsys):
    root = tmp_path / "s"
    batches = _store(root)
    _flip_a_data_file_footer(root)

    with MemoryStore(path=root) as store:  # before: ValueError: Unknown Lance storage version
        served = _texts(store)
        assert len(store) == 10 and store.stats()["damaged"] == 5
        # Exactly one commit's five records are lost, every other one is served whole.
        lost = [{r.literal_surface for r in batch} - served for batch in batches]
        assert sorted(map(len, lost)) == [0, 0, 5]
        found = store.verify()["records"]
        assert found["damaged"] == 5 and "Lance storage version" in found["errors"][0]
        record = next(r for batch in batches for r in batch if r.literal_surface in served)
        assert len(store.get(record.id).provenance) == ENTRIES_PER_RECORD
    (line,) = _log_lines(capsys.readouterr().err, "records_damaged")
    assert line["rows"] == 5


def test_a_damaged_store_keeps_taking_captures_without_reusing_a_hidden_seq(tmp_path, fake_embedder):
    root = tmp_path / "s"
    _store(root)
    with MemoryStore(path=root) as store:
        top = max(store.seqs())
    _flip(sorted((root / "records.lance" / "data").glob("*.lance"),
                 key=lambda p: p.stat().st_mtime_ns)[-1], -5)  # the newest commit: the highest seqs
    with MemoryStore(path=root) as store:
        assert max(store.seqs()) < top  # the scan cannot see them...
        store.insert(_make(text="after the damage"))
        assert store.seqs()[-1] > top  # ...but they are never given out again


def test_doctor_repair_salvages_a_store_with_a_damaged_data_file(tmp_path, cli):
    _store(cli.store)
    _flip_a_data_file_footer(cli.store)

    code, out, err = cli("doctor")
    assert code == 1 and "Traceback" not in err
    assert "FAIL damaged: 5 record(s) are in LanceDB data files that cannot be read" in out
    before = {p.relative_to(cli.store): p.read_bytes() for p in cli.store.rglob("*") if p.is_file()}

    code, out, err = cli("doctor", "--repair", "--yes")  # before: a traceback
    assert code == 0, err
    assert "salvaged the store into a fresh one: 10 record(s) copied; 5 record(s) in damaged data files" in out
    (aside,) = cli.store.parent.glob("store.damaged-*")
    # The damaged store is moved aside byte for byte, never deleted or changed.
    assert {p.relative_to(aside): p.read_bytes() for p in aside.rglob("*")
            if p.is_file() and p.name != "store.lock"} == {k: v for k, v in before.items() if k.name != "store.lock"}
    with MemoryStore(path=cli.store) as salvaged:
        assert len(salvaged) == 10 and salvaged.stats()["damaged"] == 0
        assert salvaged.stats()["provenance_entries"] == 15 * ENTRIES_PER_RECORD  # the lost records' too
    code, out, _ = cli("doctor")
    assert code == 0, out


# ------------------------------------------------------------- a lost manifest


def test_a_deleted_manifest_is_refused_loudly_not_shown_as_a_smaller_store(tmp_path):
    root = tmp_path / "s"
    _store(root)
    _manifests(root)[0].unlink()  # the newest version's
    with pytest.raises(StoreBehind) as refused:  # before: opened with 10 of 15 records, silently
        MemoryStore(path=root)
    assert "with 10 records" in str(refused.value) and "15 records" in str(refused.value)
    assert "doctor --repair" in str(refused.value)


def test_every_manifest_deleted_is_refused_not_an_empty_store(tmp_path):
    root = tmp_path / "s"
    _store(root)
    for manifest in _manifests(root):
        manifest.unlink()
    with pytest.raises(StoreBehind, match="doctor --repair"):  # before: a new, empty table
        MemoryStore(path=root)
    assert not _manifests(root)  # and no fresh table was made over the data files


def test_a_lowered_expectation_in_meta_fails_its_check(tmp_path):
    root = tmp_path / "s"
    _store(root)
    meta = json.loads((root / "meta.json").read_text())
    meta["records_table"]["version"] = 1
    (root / "meta.json").write_text(json.dumps(meta))
    _manifests(root)[0].unlink()
    with pytest.raises(StoreBehind, match="fails its check"):
        MemoryStore(path=root)


def test_repair_salvages_a_store_that_is_behind(tmp_path):
    root = tmp_path / "s"
    _store(root)
    _manifests(root)[0].unlink()
    planned = repair(root, apply=False)
    assert any("would salvage" in line and "last committed version" in line for line in planned), planned
    done = repair(root, apply=True)
    assert any("10 record(s) copied" in line and "5 record(s) the store last committed are in no version"
               in line for line in done), done
    assert list(tmp_path.glob("s.damaged-*"))
    with MemoryStore(path=root) as salvaged:  # opens: the salvaged store records what it now holds
        assert len(salvaged) == 10


# ------------------------------------------------------ a damaged provenance log


def _flip_one_sealed_entry(root: Path, record_id) -> None:
    db = sqlite3.connect(root / "provenance.sqlite3", isolation_level=None)
    seq, sealed = db.execute("SELECT seq, sealed FROM entries WHERE record_id = ? ORDER BY seq LIMIT 1",
                             (str(record_id),)).fetchone()
    damaged = bytearray(sealed)
    damaged[len(damaged) // 2] ^= 0x01
    db.execute("UPDATE entries SET sealed = ? WHERE seq = ?", (bytes(damaged), seq))
    db.close()  # the last connection: checkpoints its WAL into the file


def test_a_flipped_byte_in_one_provenance_row_is_skipped_with_a_count(tmp_path, fake_embedder):
    root = tmp_path / "s"
    batches = _store(root, fake_embedder)
    damaged = batches[1][2]
    _flip_one_sealed_entry(root, damaged.id)
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        got = dispatch(store, "memory_get", {"id": str(damaged.id)})  # before: CorruptData
        assert got["literal_surface"] == damaged.literal_surface
        assert [e["cue"] for e in got["provenance"]] == [f"cue 1 of {damaged.literal_surface}"]
        assert got["provenance_damaged"] == 1
        other = dispatch(store, "memory_get", {"id": str(batches[0][0].id)})
        assert len(other["provenance"]) == ENTRIES_PER_RECORD and other["provenance_damaged"] == 0

        page = dispatch(store, "memory_export", {"offset": 0, "limit": 100})  # before: the whole export failed
        assert len(page["records"]) == 15 and page["provenance_damaged"] == 1
        assert sum(len(r["provenance"]) for r in page["records"]) == 15 * ENTRIES_PER_RECORD - 1
        found = store.verify()["provenance"]
        assert (found["entries"], found["damaged"]) == (15 * ENTRIES_PER_RECORD - 1, 1)


def test_export_through_the_cli_reports_what_it_skipped(tmp_path, cli):
    batches = _store(cli.store)
    _flip_one_sealed_entry(cli.store, batches[0][0].id)
    code, out, err = cli("export", "--plaintext")
    assert code == 0, err
    assert len(out.splitlines()) == 15
    assert "1 provenance entry could not be read and was left out" in err
    code, out, _ = cli("doctor")
    assert code == 1 and f"FAIL provenance: 1 of {15 * ENTRIES_PER_RECORD} provenance entries cannot be read" in out


def _damage_page_one(root: Path) -> None:
    """Bytes 100-199: the schema, on SQLite's first page: no query can run."""
    path = root / "provenance.sqlite3"
    data = bytearray(path.read_bytes())
    data[100:200] = bytes(range(100, 200))
    path.write_bytes(bytes(data))


def test_a_damaged_sqlite_page_leaves_the_records_served(tmp_path, fake_embedder, capsys):
    root = tmp_path / "s"
    batches = _store(root, fake_embedder)
    _damage_page_one(root)
    with MemoryStore(path=root, embedder=fake_embedder) as store:  # before: DatabaseError at open
        assert len(store) == 15
        assert store.stats()["provenance_log_problem"]
        got = dispatch(store, "memory_get", {"id": str(batches[0][0].id)})
        assert got["literal_surface"] == batches[0][0].literal_surface and got["provenance"] == []
        assert got["provenance_damaged"] == 1
        hits = dispatch(store, "memory_recall", {"cue": "memory 0-0"})["hits"]
        assert hits  # recall works; its provenance waits in the queue's journal
    assert _log_lines(capsys.readouterr().err, "provenance_log_unavailable")


def test_repair_rebuilds_a_damaged_log_and_keeps_the_damaged_file(tmp_path):
    root = tmp_path / "s"
    batches = _store(root)
    _flip_one_sealed_entry(root, batches[2][4].id)
    planned = repair(root, apply=False)
    assert any(line.startswith("would rebuild the provenance log") for line in planned), planned
    done = repair(root, apply=True)
    assert any(f"{15 * ENTRIES_PER_RECORD} entries copied" in line for line in done), done
    (kept,) = (root / "recovered").rglob("provenance.sqlite3")
    assert sqlite3.connect(kept).execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 15 * ENTRIES_PER_RECORD

    _damage_page_one(root)
    done = repair(root, apply=True)
    assert any("rebuilt the provenance log: 0 entries copied" in line for line in done), done
    with MemoryStore(path=root) as store:
        assert len(store) == 15 and store.stats()["provenance_log_problem"] is None
        store.append_provenance_batch([(batches[0][0].id, {"cue": "after the rebuild"})])
        assert [e["cue"] for e in store.provenance_of(batches[0][0].id)] == ["after the rebuild"]


# ------------------------------------------------------------ doctor --repair


def test_repair_dry_run_lists_without_a_terminal_and_changes_nothing(tmp_path, cli):
    _store(cli.store)
    _manifests(cli.store)[0].unlink()
    before = sorted(p.name for p in cli.store.rglob("*"))
    code, out, err = cli("doctor", "--repair", "--dry-run", stdin="")  # before: an unknown option
    assert code == 0, err
    assert "would salvage" in out and "asks before changing" not in err
    assert sorted(p.name for p in cli.store.rglob("*")) == before


def test_repair_dry_run_does_not_count_a_live_owners_journal(tmp_path):
    root = tmp_path / "s"
    _store(root)
    with MemoryStore(path=root) as store:
        store.enable_provenance_queue()
        store.queue_provenance_batch([(store.rows()[0].id, {"cue": "live"})])
        assert store.flush_provenance(10)
        assert list(store.journal_dir.iterdir())  # the live queue's segment
        assert not any("journal" in line for line in repair(root, apply=False))  # before: "would replay 1"


def test_repair_never_ends_in_a_traceback(tmp_path, cli, monkeypatch):
    import iai_mcp.core.repair as repairing

    _store(cli.store)

    def broken(*args, **kwargs):
        raise RuntimeError("lance error: something nobody expected")

    monkeypatch.setattr(repairing, "repair", broken)
    code, out, err = cli("doctor", "--repair", "--yes")
    assert code == 3
    assert "unexpected RuntimeError: lance error: something nobody expected" in err
    assert _log_lines(err, "repair_failed")


def test_repair_salvage_into_a_new_directory_leaves_the_store_as_it_is(tmp_path, cli):
    _store(cli.store)
    _flip_a_data_file_footer(cli.store)
    dest = tmp_path / "rescued"
    code, out, err = cli("doctor", "--repair", "--yes", "--salvage", str(dest))
    assert code == 0, err
    assert f"salvaged into {dest}: 10 record(s) copied" in out
    assert not list(cli.store.parent.glob("store.damaged-*"))
    with MemoryStore(path=dest) as rescued:
        assert len(rescued) == 10
    with MemoryStore(path=cli.store) as original:
        assert original.stats()["damaged"] == 5


@pytest.mark.slow
def test_doctor_reports_the_daemon_it_started_as_running(tmp_path, monkeypatch, capsys):
    """doctor reaches the store through a daemon it starts on demand; that
    daemon is running when doctor reports (it was checked before, as not running)."""
    from iai_mcp.cli import main
    from iai_mcp.daemon import lifecycle as daemon

    store = tmp_path / "store"
    monkeypatch.setenv("IAI_MCP_STORE", str(store))
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    assert daemon.status(store) is None
    code = main(["doctor", "--init"])  # a named store that does not exist yet
    out = capsys.readouterr().out
    status = daemon.status(store)
    assert code == 0 and status is not None, out
    assert f"PASS daemon: running: pid={status['pid']}" in out  # before: "PASS daemon: not running"


def test_a_store_that_is_behind_is_a_one_line_error_in_the_cli(tmp_path, cli):
    _store(cli.store)
    _manifests(cli.store)[0].unlink()
    code, out, err = cli("stats")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("iai-mcp: error: the records table") and "doctor --repair" in err
