"""What a review of the damage and durability work found (issue 13, round 2).

Each test fails on the code before its fix: a full disk on the meta write
after a commit, ``doctor --repair`` against a live daemon, a dry run that
changed the store, an unreadable old manifest breaking ``stats``, a damaged
log failing captures, salvage without a log, a pending purge over a damaged log.
"""
from __future__ import annotations

import errno
import json
from pathlib import Path
from uuid import UUID

import pytest

import iai_mcp.store as store_module
from iai_mcp.core import dispatch
from iai_mcp.errors import StoreError
from iai_mcp.store import META_FILE, MemoryStore
from tests.test_damage import _damage_page_one, _log_lines, _store
from tests.test_store import _make


def _full_disk_on_meta(monkeypatch) -> list[Path]:
    """meta.json writes fail with ENOSPC (everything else writes); returns the paths refused."""
    refused: list[Path] = []
    real = store_module.write_json_atomic

    def write(path: Path, data: dict) -> None:
        if path.name == META_FILE:
            refused.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store_module, "write_json_atomic", write)
    return refused


# --------------------------------------------- a full disk after the commit (2)


def test_a_full_disk_on_the_meta_write_never_fails_a_committed_capture(tmp_path, fake_embedder, monkeypatch,
                                                                        capsys):
    root = tmp_path / "s"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        dispatch(store, "memory_capture", {"text": "before the disk filled"})
        refused = _full_disk_on_meta(monkeypatch)
        got = dispatch(store, "memory_capture", {"text": "captured on a full disk"})  # before: OSError
        assert refused and got["status"] == "inserted"
        again = dispatch(store, "memory_capture", {"text": "captured on a full disk"})  # a client's retry
        assert again["record_id"] == got["record_id"]
        monkeypatch.undo()
    with MemoryStore(path=root, embedder=fake_embedder) as store:  # a newer table passes the expectation
        texts = [row.literal_surface for row in store.rows()]
        assert texts.count("captured on a full disk") == 1 and len(texts) == 2
        assert len({row.id for row in store.rows()}) == 2
    (line,) = _log_lines(capsys.readouterr().err, "expectation_not_recorded")[:1]
    assert "No space left" in line["error"]


def test_a_full_disk_on_the_meta_write_leaves_an_update_and_a_compaction_done(tmp_path, monkeypatch):
    root = tmp_path / "s"
    record = _make(text="kept")
    with MemoryStore(path=root, compact_every=0) as store:
        store.insert(record)
        store.insert(_make(text="another"))
        refused = _full_disk_on_meta(monkeypatch)
        store.update(record.id, pinned=True)  # before: OSError, and memory stayed unpinned
        assert store.row(record.id).pinned
        result = store.compact()  # before: StoreError "compaction failed" although it had compacted
        assert result["versions_after"] == 1 and refused
        monkeypatch.undo()
    with MemoryStore(path=root) as store:
        assert store.row(record.id).pinned and len(store) == 2


# ------------------------------------------------- an unreadable old manifest (5)


def _garble_the_oldest_manifest(root: Path) -> None:
    """The newest version still serves; listing the history fails in LanceDB."""
    # v2 manifest names count down from 2**64: the largest name is the oldest version.
    max((root / "records.lance" / "_versions").glob("*.manifest")).write_bytes(b"garbage" * 10)


def test_an_unreadable_old_manifest_leaves_stats_answering(tmp_path):
    root = tmp_path / "s"
    _store(root)
    _garble_the_oldest_manifest(root)
    with MemoryStore(path=root) as store:
        stats = store.stats()  # before: RuntimeError from LanceDB's list_versions
        assert stats["records"] == 15 and stats["versions"] is None


def test_doctor_reports_an_unreadable_old_manifest_instead_of_failing(tmp_path, cli):
    _store(cli.store)
    _garble_the_oldest_manifest(cli.store)
    code, out, err = cli("doctor")  # before: "FAIL store: ... RuntimeError" and nothing else
    assert code == 1 and "Traceback" not in err
    assert "FAIL damaged: the records table's version history cannot be read" in out
    assert "PASS store:" in out and "WARN versions: the version history cannot be read" in out
    code, out, err = cli("stats")
    assert code == 0 and "lancedb: unreadable version history" in out


# ------------------------------------------------------ salvage without a log (7)


def test_salvage_copies_the_records_of_a_store_whose_log_is_missing(tmp_path):
    from iai_mcp.store.salvage import salvage

    root, dest = tmp_path / "s", tmp_path / "rescued"
    _store(root)
    (root / "provenance.sqlite3").unlink()
    report = salvage(root, dest)  # before: FileNotFoundError from chmod of a log never copied
    assert (report.records, report.provenance) == (15, 0)
    with MemoryStore(path=dest) as rescued:
        assert len(rescued) == 15 and rescued.stats()["provenance_entries"] == 0
    assert (dest / "provenance.sqlite3").stat().st_mode & 0o777 == 0o600


# ------------------------------------------------ a dry run changes nothing (4)


def _full_disk(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _snapshot(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_repair_dry_run_leaves_every_file_of_an_opening_store_as_it_was(tmp_path, cli, monkeypatch):
    """A store that opens, with more versions than the compaction threshold,
    an expectation an older version never wrote, and a purge left pending:
    a writable open compacts, rewrites meta.json and finishes the purge."""
    import iai_mcp.store.purge as purging
    from tests.test_damage import _flip_one_sealed_entry

    records = [_make(text=f"memory {i}") for i in range(205)]
    with MemoryStore(path=cli.store, compact_every=0) as store:
        assert store.compact_every == 0
        for record in records:
            store.insert(record)
        store.append_provenance_batch([(records[1].id, {"cue": "a cue"})])
        with monkeypatch.context() as patched, pytest.raises(StoreError, match="could not finish"):
            patched.setattr(purging, "carry_out", _full_disk)
            store.purge([records[0].id])
        assert store.stats()["versions"] > 200  # MemoryStore's default compaction threshold
    meta = json.loads((cli.store / META_FILE).read_text())
    del meta["records_table"]  # as a store from before the expectation was kept
    (cli.store / META_FILE).write_text(json.dumps(meta))
    _flip_one_sealed_entry(cli.store, records[1].id)
    before = _snapshot(cli.store)

    code, out, err = cli("doctor", "--repair", "--dry-run")
    assert code == 0, err
    assert "would rebuild the provenance log" in out
    after = _snapshot(cli.store)
    assert after.keys() == before.keys()  # before: compaction removed old versions' files
    assert [p for p in before if after[p] != before[p]] == []  # before: meta.json rewritten


# ------------------------------------------------ repair with a live daemon (3)


@pytest.mark.slow
def test_doctor_repair_salvages_a_store_its_running_daemon_serves(tmp_path, monkeypatch, capsys):
    from iai_mcp.cli import main
    from iai_mcp.daemon import lifecycle as daemon
    from tests.test_damage import _flip_a_data_file_footer

    root = tmp_path / "store"
    monkeypatch.setenv("IAI_MCP_STORE", str(root))
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    _store(root)
    _flip_a_data_file_footer(root)
    try:
        assert main(["doctor"]) == 1
        assert "FAIL damaged: 5 record(s)" in capsys.readouterr().out
        running = daemon.status(root)
        assert running is not None

        assert main(["doctor", "--repair", "--dry-run"]) == 0  # planned from the daemon's memory_verify
        out = capsys.readouterr().out
        assert "would salvage what can be read" in out and "5 record(s)" in out, out  # before: nothing to repair
        assert daemon.status(root)["pid"] == running["pid"]  # a dry run leaves the daemon serving

        assert main(["doctor", "--repair", "--yes"]) == 0
        out = capsys.readouterr().out
        assert "would salvage what can be read" in out, out  # the plan shown...
        assert "salvaged the store into a fresh one: 10 record(s) copied" in out, out  # ...is the one that ran
        assert list(tmp_path.glob("store.damaged-*"))
        assert main(["doctor"]) == 0, capsys.readouterr().out
    finally:
        daemon.stop(root)


# ------------------------------------------- captures over a damaged log (6)


def test_a_capture_over_an_unavailable_log_is_stored_and_reported(tmp_path, fake_embedder, capsys):
    root = tmp_path / "s"
    _store(root, fake_embedder)
    _damage_page_one(root)
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        got = dispatch(store, "memory_capture", {"text": "stored although the log is damaged",
                                                 "cue": "a cue"})  # before: CorruptData
        assert got["status"] == "inserted"
        assert store.get(got["record_id"]).literal_surface == "stored although the log is damaged"
    (line,) = _log_lines(capsys.readouterr().err, "provenance_deferred")
    assert line["action"] == "not recorded" and "cannot be opened" in line["error"]
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        assert len(store) == 16


@pytest.mark.slow
def test_a_queued_capture_over_an_unavailable_log_reaches_the_rebuilt_log(tmp_path, fake_embedder):
    """With the queue running (the daemon), the capture's provenance is
    journaled and lands in the log once ``doctor --repair`` has rebuilt it."""
    from iai_mcp.core.repair import repair

    root = tmp_path / "s"
    _store(root, fake_embedder)
    _damage_page_one(root)
    spill = tmp_path / "spill"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        store.enable_provenance_queue(spill_dir=spill)
        got = dispatch(store, "memory_capture", {"text": "captured while the log is damaged", "cue": "kept cue"})
        assert got["status"] == "inserted"
        assert dispatch(store, "memory_recall", {"cue": "memory 0-0"})["hits"]
        assert dispatch(store, "memory_get", {"id": got["record_id"]})["provenance_damaged"] == 1
    assert any("rebuilt the provenance log" in line for line in repair(root, apply=True, spill_dir=spill))
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        cues = [e["cue"] for e in store.provenance_of(UUID(got["record_id"]))]
        assert cues[0] == "kept cue" and cues.count("kept cue") == 1  # (the recall may have hit it too)


def test_memory_get_after_a_recall_does_not_wait_for_a_log_that_cannot_drain(tmp_path, fake_embedder,
                                                                             monkeypatch):
    import sys
    import time

    root = tmp_path / "s"
    batches = _store(root, fake_embedder)
    _damage_page_one(root)
    monkeypatch.setattr(sys.modules["iai_mcp.core.dispatch"], "GET_FLUSH_TIMEOUT_S", 12.0)
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        store.enable_provenance_queue(spill_dir=tmp_path / "spill")
        assert dispatch(store, "memory_recall", {"cue": "memory 0-0"})["hits"]
        started = time.monotonic()
        shown = dispatch(store, "memory_get", {"id": str(batches[0][0].id)})
        assert time.monotonic() - started < 6  # before: the whole 12 s flush timeout
        assert shown["literal_surface"] == batches[0][0].literal_surface and shown["provenance_damaged"] == 1


# ---------------------------------- a pending purge over an unavailable log (8)


def _held_in(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_pending_purge_over_an_unavailable_log_is_deferred_then_finished_by_repair(tmp_path, monkeypatch,
                                                                                      capsys):
    import iai_mcp.store.purge as purging
    from iai_mcp.core.repair import repair
    from iai_mcp.store.purge import INTENT_FILE

    root = tmp_path / "s"
    batches = _store(root)
    gone = batches[1][3]
    with MemoryStore(path=root) as store, monkeypatch.context() as patched:
        patched.setattr(purging, "carry_out", _full_disk)
        with pytest.raises(StoreError, match="could not finish"):
            store.purge([gone.id])
    _damage_page_one(root)
    capsys.readouterr()

    with MemoryStore(path=root) as store:  # opens: the purge is deferred, not failed
        assert len(store) == 14 and store.row(gone.id) is None
    assert _log_lines(capsys.readouterr().err, "purge_deferred")
    # The part that can be done is done: no file of the records table holds the id any more.
    assert _held_in(root / "records.lance", str(gone.id).encode()) == []  # before: still in a data file
    assert (root / INTENT_FILE).exists()  # the log's part waits for the rebuild

    done = repair(root, apply=True)  # rebuilds the log, then its open finishes the purge
    assert any("rebuilt the provenance log" in line for line in done), done
    assert not (root / INTENT_FILE).exists()
    capsys.readouterr()
    with MemoryStore(path=root) as store:
        assert len(store) == 14 and store.stats()["provenance_log_problem"] is None
    assert not _log_lines(capsys.readouterr().err, "purge_deferred")
    # Only the damaged log repair keeps aside (never deleted, by design) still holds it.
    assert [p.relative_to(root).parts[0] for p in _held_in(root, str(gone.id).encode())] == ["recovered"]
