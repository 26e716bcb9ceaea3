"""Compaction off the write path: a store opened with ``compact_when_idle``
(the daemon's) leaves a due compaction to ``compact_if_due``, which the
daemon calls once no request has come for a moment (store.compaction)."""
from __future__ import annotations

import pytest

from iai_mcp.core.capture import CaptureRequest, capture_many
from iai_mcp.daemon import service as daemon_server
from iai_mcp.store import MemoryStore
from iai_mcp.store.compaction import OVERDUE_FACTOR
from tests.test_daemon import InThread, _capture, _client, _eventually, root  # noqa: F401  (root: fixture)


def _write(store, embedder, text: str) -> None:
    capture_many(store, embedder, [CaptureRequest(text=text)])


def test_writes_leave_a_due_compaction_to_compact_if_due(tmp_path, fake_embedder):
    with MemoryStore(path=tmp_path / "s", embedder=fake_embedder, compact_every=3, compact_when_idle=True) as store:
        for i in range(3):
            _write(store, fake_embedder, f"note {i} about the garden")
        assert store.compaction_due and store.stats()["versions"] == 4  # one per write, none folded
        store.compact_if_due()
        assert not store.compaction_due and store.stats()["versions"] == 1
        store.compact_if_due()  # nothing due: nothing done
        assert store.stats()["versions"] == 1


def test_a_store_written_without_pause_still_compacts_on_a_write(tmp_path, fake_embedder):
    every = 3
    with MemoryStore(path=tmp_path / "s", embedder=fake_embedder, compact_every=every, compact_when_idle=True) as store:
        versions = []
        for i in range(every * OVERDUE_FACTOR):
            _write(store, fake_embedder, f"note {i} about the garden")
            versions.append(store.stats()["versions"])
        assert max(versions) == every * OVERDUE_FACTOR and versions[-1] == 1  # the overdue write compacted


def test_the_open_leaves_the_compaction_too_unless_overdue(tmp_path, fake_embedder):
    path = tmp_path / "s"
    with MemoryStore(path=path, embedder=fake_embedder, compact_every=0) as store:
        for i in range(4):
            _write(store, fake_embedder, f"note {i} about the garden")
    with MemoryStore(path=path, embedder=fake_embedder, compact_every=3, compact_when_idle=True) as store:
        assert store.compaction_due and store.stats()["versions"] == 5  # not on the open's time
    with MemoryStore(path=path, embedder=fake_embedder, compact_every=3) as store:
        assert store.stats()["versions"] == 1  # an owner that never calls compact_if_due: at open, as before
    with MemoryStore(path=path, embedder=fake_embedder, compact_every=0) as store:
        for i in range(3 * OVERDUE_FACTOR):
            _write(store, fake_embedder, f"more {i} about the garden")
    with MemoryStore(path=path, embedder=fake_embedder, compact_every=3, compact_when_idle=True) as store:
        assert store.stats()["versions"] == 1  # overdue: the open compacts after all


@pytest.mark.slow
def test_the_daemon_compacts_once_quiet_and_not_in_the_write(root, monkeypatch):  # noqa: F811
    monkeypatch.setattr(daemon_server, "COMPACT_QUIET_S", 3600.0)  # not before the writes are checked
    monkeypatch.setattr(daemon_server, "COMPACT_CHECK_S", 0.05)
    with InThread(root) as served:
        served.store._compaction.every = 3  # instead of 200 writes
        backend = _client(root)
        for i in range(3):
            _capture(backend, f"note {i} about the garden")
        assert served.store.compaction_due  # the third write answered without compacting
        monkeypatch.setattr(daemon_server, "COMPACT_QUIET_S", 0.3)
        assert _eventually(lambda: not served.store.compaction_due)
        assert served.store.stats()["versions"] == 1
        assert len(backend.call("memory_recall", {"cue": "garden", "k": 10})["hits"]) == 3
        backend.close()


@pytest.mark.slow
def test_no_compaction_while_a_request_runs_however_long(root, monkeypatch):  # noqa: F811
    monkeypatch.setattr(daemon_server, "COMPACT_QUIET_S", 0.2)
    monkeypatch.setattr(daemon_server, "COMPACT_CHECK_S", 0.05)
    with InThread(root) as served:
        served.store._compaction.every = 2
        backend = _client(root)
        for i in range(2):
            _capture(backend, f"note {i} about the garden")
        with served._state_lock:
            for conn in served._connections:
                conn.busy = True  # a request that has been running for a while
        assert not _eventually(lambda: not served.store.compaction_due, timeout=1.0)
        with served._state_lock:
            for conn in served._connections:
                conn.busy = False
        assert _eventually(lambda: not served.store.compaction_due)
        backend.close()


@pytest.mark.slow
def test_a_full_disk_during_a_quiet_compaction_is_logged_and_waits_for_more_writes(root, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setattr(daemon_server, "COMPACT_QUIET_S", 0.2)
    monkeypatch.setattr(daemon_server, "COMPACT_CHECK_S", 0.05)
    with InThread(root) as served:
        served.store._compaction.every = 2
        calls = []

        def full_disk() -> dict:
            calls.append(1)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(served.store._records, "compact", full_disk)
        backend = _client(root)
        for i in range(2):
            _capture(backend, f"note {i} about the garden")
        assert _eventually(lambda: len(calls) == 1)
        assert not _eventually(lambda: len(calls) > 1, timeout=1.0)  # no retry loop on a standing failure
        assert not served.store.compaction_due  # due again after `every` more writes
        assert _capture(backend, "still answering")["record_id"]
        _capture(backend, "and one more")
        assert _eventually(lambda: len(calls) == 2)
        backend.close()
    failures = [r.fields for r in caplog.records if r.getMessage() == "compaction_failed"]
    assert failures and failures[0]["when"] == "idle" and "No space left" in failures[0]["error"]
