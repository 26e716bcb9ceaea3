"""Durability, round 2 (issue 13 items 1, 2, 7, 8): a resent recall, a full
disk, versions across restarts, and the smaller edges (time windows, a FIFO
in the spill directory, a read-only store)."""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import select
import signal
import sqlite3
import sys
import threading
import uuid

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.capture import CaptureRequest, capture_many
from iai_mcp.embed import HashEmbedder
from iai_mcp.errors import StoreError
from iai_mcp.store import MemoryStore
from iai_mcp.store.records_table import RecordsTable
from tests.test_daemon import InThread, _client

WAIT_S = 30.0
DISK_FULL = "database or disk is full"


def _events(err: str, event: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in err.splitlines() if line.startswith("{"))
            if e.get("event") == event]


def _fill(store: MemoryStore, n: int = 8) -> None:
    capture_many(store, store.embedder, [CaptureRequest(text=f"note {i} about the release plan") for i in range(n)])


def _recall(store: MemoryStore, cue: str) -> list[str]:
    hits = dispatch(store, "memory_recall", {"cue": cue, "k": 3})["hits"]
    assert hits
    return [hit["record_id"] for hit in hits]


def _disk_full(store: MemoryStore) -> int:
    """Make the provenance log really full: SQLite answers SQLITE_FULL (and
    rolls the transaction back itself) once the file would grow. Returns the
    limit it had, to give the space back with ``_disk_freed``."""
    conn = store._log._conn
    before = conn.execute("PRAGMA max_page_count").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    return before


def _disk_freed(store: MemoryStore, limit: int) -> None:
    store._log._conn.execute(f"PRAGMA max_page_count={limit}")


def _big_pairs(store: MemoryStore, n: int = 20) -> list[tuple]:
    rid = store.rows()[0].id
    return [(rid, {"cue": "x" * 4000, "n": i}) for i in range(n)]


# ------------------------------------------------------------ 2. full disk


def test_a_failed_rollback_does_not_hide_the_full_disk(store, capsys):
    _fill(store)
    limit = _disk_full(store)
    with pytest.raises(sqlite3.OperationalError, match=DISK_FULL):
        store.append_provenance_batch(_big_pairs(store))
    # Space returns: the very next append works (no transaction left open).
    _disk_freed(store, limit)
    assert store.append_provenance_batch(_big_pairs(store)) == 20


class _RaisingHandler(logging.Handler):
    """A host's handler that lets its own failure through (logging only
    guards ``emit``): what a handler writing to a full disk can do."""

    def handle(self, record: logging.LogRecord) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")


class _FullStream(io.TextIOBase):
    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_provenance_worker_survives_a_full_disk_and_lands_everything_after(tmp_path, fake_embedder,
                                                                          monkeypatch):
    store = MemoryStore(path=tmp_path / "s", embedder=fake_embedder)
    _fill(store)
    blocker = tmp_path / "blocker"
    blocker.write_text("")  # the spill directory cannot be created either
    queue = store.enable_provenance_queue(coalesce_ms=1, spill_dir=blocker / "spill")
    limit = _disk_full(store)
    handler = _RaisingHandler()
    logging.getLogger("iai_mcp").addHandler(handler)
    monkeypatch.setattr(sys, "stderr", _FullStream())
    try:
        # Cues of a few pages each: no entry fits in what the log file has left.
        cues = [f"full {i} " + "release plan " * 600 for i in range(4)]
        returned = {cue: _recall(store, cue) for cue in cues}
        assert not queue.flush(timeout=1.5)  # failing, retrying
        assert queue._thread.is_alive()
    finally:
        logging.getLogger("iai_mcp").removeHandler(handler)
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    _disk_freed(store, limit)
    assert queue._thread.is_alive()
    assert queue.flush(timeout=WAIT_S)  # no restart needed
    for cue, rids in returned.items():
        for rid in rids:
            assert [e["cue"] for e in store.provenance_of(uuid.UUID(rid))].count(cue) == 1
    store.close()


def test_a_capture_on_a_full_log_is_stored_reported_as_stored_and_its_cue_lands_later(tmp_path, fake_embedder):
    """The records commit, then the log is full (SQLITE_FULL): the capture
    succeeds (a retry would only reinforce it), and with the queue running its
    cue's entry lands once space returns (review find, issue 13 item 2)."""
    store = MemoryStore(path=tmp_path / "s", embedder=fake_embedder)
    _fill(store)
    queue = store.enable_provenance_queue(coalesce_ms=1, spill_dir=tmp_path / "spill")
    limit = _disk_full(store)
    cue = "why keep it " + "release plan " * 600  # pages of cue: it cannot fit what the log has left
    out = dispatch(store, "memory_capture", {"text": "the full-disk capture", "cue": cue})
    assert out["status"] == "inserted"
    assert not queue.flush(timeout=1.0)  # waiting for space
    _disk_freed(store, limit)
    assert queue.flush(timeout=WAIT_S)
    assert [e["cue"] for e in store.provenance_of(uuid.UUID(out["record_id"]))] == [cue]
    store.close()


class _Panic(BaseException):
    """What pyo3 raises when LanceDB's Rust core panics (not an Exception)."""


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    _Panic("called `Result::unwrap()` on an `Err` value: No space left on device"),
])
def test_compact_on_a_full_disk_answers_with_a_typed_error_on_the_same_connection(
    tmp_path, monkeypatch, failure
):
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    root = tmp_path / "store"

    def full(self):
        raise failure

    monkeypatch.setattr(RecordsTable, "compact", full)
    with InThread(root):
        client = _client(root)
        client.call("memory_capture", {"text": "something to compact"})
        connection = client._sock
        with pytest.raises(StoreError, match="compaction failed.*No space left on device"):
            client.call("memory_compact")
        assert client._sock is connection  # answered, not dropped
        assert client.call("memory_stats")["records"] == 1
        client.close()


def test_automatic_compaction_that_fails_never_fails_the_write(tmp_path, fake_embedder, monkeypatch, capsys):
    store = MemoryStore(path=tmp_path / "s", embedder=fake_embedder, compact_every=2)

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RecordsTable, "compact", full)
    _fill(store, 4)  # one capture_many: its writes pass the threshold
    for i in range(3):
        capture_many(store, fake_embedder, [CaptureRequest(text=f"one more {i}")])
    assert len(store) == 7
    failed = _events(capsys.readouterr().err, "compaction_failed")
    assert failed and "No space left on device" in failed[0]["error"]
    store.close()


# ------------------------------------------------- 7. versions across restarts


def test_versions_stay_bounded_across_many_restarts(tmp_path, fake_embedder):
    root = tmp_path / "s"
    versions = []
    for i in range(15):
        with MemoryStore(path=root, embedder=fake_embedder, compact_every=6) as store:
            capture_many(store, fake_embedder, [CaptureRequest(text=f"restart {i} note")])
            capture_many(store, fake_embedder, [CaptureRequest(text=f"restart {i} other note")])
            versions.append(store.stats()["versions"])
    # Two writes per process never reach six in one process: only a count
    # that survives the restart compacts.
    assert max(versions) <= 6 + 2, versions
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        assert len(store) == 30


# ------------------------------------------------------------ 1. resent recall


@pytest.mark.slow
def test_a_recall_resent_after_the_daemon_died_mid_reply_leaves_each_entry_once(tmp_path, monkeypatch):
    """The issue's repro: five ~90k-character memories, a recall with
    budget_tokens=100000 whose answer (hundreds of KB) cannot all fit in the
    socket's buffers, the daemon SIGKILLed while it is sending it. The client
    resends; the new daemon replays the dead one's journal and runs the
    recall again: every hit must still have exactly one entry."""
    from iai_mcp.daemon import client as daemon_client
    from iai_mcp.daemon import lifecycle as daemon

    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    root = tmp_path / "store"
    client = daemon_client.DaemonClient(root)
    for i in range(5):
        text = f"memory {i} about the garden shed. " + " ".join(f"w{i}x{j}" for j in range(15_000))
        client.call("memory_capture", {"text": text[:90_000]})
    first_pid = daemon.status(root)["pid"]
    real_read = daemon_client.DaemonClient._read_reply
    killed = []

    def kill_while_the_daemon_sends(self, method, request_id):
        if not killed:
            # The daemon has run the recall (journaled its entries) once it
            # starts answering; it is then blocked on the full socket.
            readable, _, _ = select.select([self._sock], [], [], WAIT_S)
            assert readable, "the daemon never answered"
            os.kill(first_pid, signal.SIGKILL)
            assert daemon.wait_for_exit(first_pid, WAIT_S)
            killed.append(first_pid)
        return real_read(self, method, request_id)

    monkeypatch.setattr(daemon_client.DaemonClient, "_read_reply", kill_while_the_daemon_sends)
    cue = "garden shed"
    hits = client.call("memory_recall", {"cue": cue, "budget_tokens": 100_000, "session_id": "s"})["hits"]
    assert killed and daemon.status(root)["pid"] != first_pid  # it really was resent to a new daemon
    assert len(hits) == 5
    client.close()
    assert daemon.stop(root, timeout=WAIT_S)
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:
        for hit in hits:
            cues = [e["cue"] for e in store.provenance_of(uuid.UUID(hit["record_id"]))]
            assert cues.count(cue) == 1, cues


def test_one_request_key_leaves_one_entry_per_hit_however_often_it_runs(store):
    _fill(store)
    store.enable_provenance_queue(coalesce_ms=1)
    params = {"cue": "release plan", "k": 3}
    first = dispatch(store, "memory_recall", params, request_key="k1")["hits"]
    again = dispatch(store, "memory_recall", params, request_key="k1")["hits"]
    other = dispatch(store, "memory_recall", params, request_key="k2")["hits"]
    assert [h["record_id"] for h in first] == [h["record_id"] for h in again] == [h["record_id"] for h in other]
    assert store.flush_provenance(WAIT_S)
    for hit in first:
        assert len(store.provenance_of(uuid.UUID(hit["record_id"]))) == 2  # k1 once, k2 once


def test_a_malformed_request_key_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    from iai_mcp.daemon import wire

    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    root = tmp_path / "store"
    with InThread(root) as served:
        for key in (5, "", "k" * (wire.MAX_KEY_CHARS + 1)):
            reply = json.loads(served._handle(wire.encode(
                {"id": 1, "method": "memory_capture", "params": {"text": "never stored"}, "key": key})))
            assert reply["error"]["code"] == "invalid_input" and "'key'" in reply["error"]["message"]
        assert len(served.store) == 0


# -------------------------------------------------------------- 8. smaller


@pytest.mark.parametrize("method,extra", [
    ("memory_recall", {"cue": "release plan"}), ("memory_list", {}), ("memory_forget", {}),
])
def test_since_after_until_is_a_typed_error_and_nothing_changes(store, method, extra):
    from iai_mcp.errors import InvalidInput

    _fill(store, 3)
    with pytest.raises(InvalidInput, match="since .* is after until"):
        dispatch(store, method, {**extra, "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert len(dispatch(store, "memory_list", {})["items"]) == 3
    # The same instant at both ends is a window, not a mistake.
    dispatch(store, method, {**extra, "since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z",
                             **({"dry_run": True} if method == "memory_forget" else {})})


def test_a_fifo_in_the_spill_or_journal_directory_is_skipped_not_waited_on(tmp_path, fake_embedder):
    from iai_mcp.provenance_queue import pending
    from iai_mcp.provenance_queue.batch import with_ids
    from iai_mcp.provenance_queue.spill import SpillDir

    store = MemoryStore(path=tmp_path / "s", embedder=fake_embedder)
    _fill(store, 2)
    spill = tmp_path / "spill"
    spill.mkdir()
    # Named like this store's oldest spill file, so it is the first one tried.
    fifo = spill / f"prov-{store.store_id}-{0:020d}-{0:08d}{pending.SPILL_SUFFIX}"
    os.mkfifo(fifo)
    # And one named like a dead queue's journal segment, which start() replays.
    store.journal_dir.mkdir(exist_ok=True)
    journal_fifo = store.journal_dir / f"prov-{store.store_id}-{0:020d}-1-{0:06d}{pending.JOURNAL_SUFFIX}"
    os.mkfifo(journal_fifo)
    rid = store.rows()[0].id
    line = pending.seal_batch(store.sealer(pending.SEAL_PURPOSE), with_ids([(rid, {"cue": "spilled"})]))
    SpillDir(spill, store.store_id).write([(1, line)])
    flushed: list[bool] = []
    # start() replays the journal on this thread: run it on another, so a
    # worker or a start blocked on a FIFO fails the test instead of hanging it.
    runner = threading.Thread(target=lambda: flushed.append(
        store.enable_provenance_queue(coalesce_ms=1, spill_dir=spill).flush(timeout=10)), daemon=True)
    runner.start()
    runner.join(WAIT_S)
    try:
        assert flushed == [True], "start or the worker is stuck on a FIFO"
        assert [e["cue"] for e in store.provenance_of(rid)] == ["spilled"]
        assert fifo.exists() and journal_fifo.exists()  # not ours: left where they are
    finally:
        if flushed != [True]:
            _let_fifo_readers_go([fifo, journal_fifo], seconds=3)
        store.disable_provenance_queue(timeout=5)
        store.close()


def _let_fifo_readers_go(paths, seconds: float) -> None:
    """Open and close the write end of each FIFO for a while: a reader
    blocked opening one then reads an empty file and goes on."""
    tick = threading.Event()
    for _ in range(int(seconds / 0.05)):
        for path in paths:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # no reader waiting (ENXIO) or already gone
        tick.wait(0.05)


def _snapshot(root) -> dict[str, tuple[int, int, bytes | None]]:
    """Every path under ``root`` with its mode, mtime and (files) bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime_ns,
                                       p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_a_read_only_store_serves_reading_commands_and_writes_nothing(cli, monkeypatch):
    from iai_mcp import fs

    assert cli("capture", "the plan for the garden shed")[0] == 0
    assert cli("capture", "what the roof needs")[0] == 0
    code, out, _ = cli("recall", "garden shed", "--json")
    record_id = json.loads(out)["hits"][0]["record_id"]
    root = cli.store
    for path in [root, *root.rglob("*")]:  # chmod -R a-w
        path.chmod(path.stat().st_mode & ~0o222)
    if os.geteuid() == 0:
        # root writes through any mode: the permission check is the part that
        # cannot be real here, so it says what it would say to anyone else.
        monkeypatch.setattr(fs, "writable", lambda directory: False, raising=False)
    else:
        assert not fs.writable(root)
    before = _snapshot(root)
    try:
        for argv in (("recall", "garden shed"), ("show", record_id), ("list",), ("stats",),
                     ("export", "--plaintext")):
            code, out, err = cli(*argv)
            assert code == 0, (argv, err)
            assert out.strip(), argv
        assert _snapshot(root) == before  # nothing created, changed or removed
        code, out, err = cli("capture", "refused")
        assert code != 0 and "read-only" in err
        assert _snapshot(root) == before
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_a_store_opened_read_only_by_a_relative_path_reads_and_changes_nothing(tmp_path, fake_embedder,
                                                                               monkeypatch):
    with MemoryStore(path=tmp_path / "s", embedder=fake_embedder) as store:
        _fill(store, 3)
        store.enable_provenance_queue(coalesce_ms=1)
        wanted = _recall(store, "release plan")
    before = _snapshot(tmp_path / "s")
    monkeypatch.chdir(tmp_path)
    with MemoryStore(path="s", embedder=fake_embedder, read_only=True) as store:
        assert _recall(store, "release plan") == wanted
        assert len(store.provenance_of(uuid.UUID(wanted[0]))) == 1  # the earlier recall's, read back
        assert store.stats()["records"] == 3
    assert _snapshot(tmp_path / "s") == before
