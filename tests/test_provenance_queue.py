"""ProvenanceWriteQueue beyond the spec: ownership of spill files, order,
prompt drain, stop under load, failures, and replay after a killed process."""
from __future__ import annotations

import base64
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from iai_mcp.provenance_queue import ProvenanceWriteQueue
from iai_mcp.provenance_queue.pending import SEAL_PURPOSE, decode_pairs
from iai_mcp.store import MemoryStore
from tests.test_store import _make


def _overflow(home: Path) -> Path:
    return home / ".iai-mcp" / ".provenance-overflow"


class Gate:
    """Wraps store.append_provenance_batch so a test decides when writes go through."""

    def __init__(self, store: MemoryStore) -> None:
        self.open = threading.Event()
        self.calls = 0
        self.entered = threading.Event()
        real = store.append_provenance_batch

        def gated(pairs, records_cache=None):
            self.calls += 1
            self.entered.set()
            assert self.open.wait(10.0), "test never opened the gate"
            return real(pairs, records_cache=records_cache)

        store.append_provenance_batch = gated  # type: ignore[method-assign]


class Failing:
    """Wraps store.append_provenance_batch so that its next ``times`` calls
    (those whose pairs ``when`` picks) raise ``error``; ``left`` counts down."""

    def __init__(self, store: MemoryStore, times: int, error: Exception, when=lambda pairs: True) -> None:
        self.left = times
        real = store.append_provenance_batch

        def failing(pairs, records_cache=None):
            if self.left and when(pairs):
                self.left -= 1
                raise error
            return real(pairs, records_cache=records_cache)

        store.append_provenance_batch = failing  # type: ignore[method-assign]


def _store_with_one_record(tmp_path: Path) -> tuple[MemoryStore, object]:
    store = MemoryStore(path=tmp_path / "s")
    record = _make()
    store.insert(record)
    return store, record


def _cues(store: MemoryStore, record_id) -> list[str]:
    return [e["cue"] for e in store.get(record_id).provenance]


def test_spill_keeps_per_record_order_and_drains_without_poll(tmp_path, _isolate_home):
    store = MemoryStore(path=tmp_path / "s")
    a, b = _make(text="a"), _make(text="b")
    store.insert(a)
    store.insert(b)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=2, max_batch_pairs=1)
    q.start()
    try:
        q.enqueue([(a.id, {"cue": "a0"})])
        assert gate.entered.wait(5.0)
        for i in range(1, 12):
            q.enqueue([(a.id, {"cue": f"a{i}"}), (b.id, {"cue": f"b{i}"})])
        assert list(_overflow(_isolate_home).glob("prov-*.jsonl")), "expected spills"
        t0 = time.monotonic()
        gate.open.set()
        assert q.flush(timeout=4.0)
        # Far below the 5 s idle poll: the drain starts as soon as the queue is idle.
        assert time.monotonic() - t0 < 4.0
    finally:
        q.stop()
    assert _cues(store, a.id) == [f"a{i}" for i in range(12)]
    assert _cues(store, b.id) == [f"b{i}" for i in range(1, 12)]
    assert list(_overflow(_isolate_home).glob("*.jsonl")) == []


def test_spill_files_are_sealed(tmp_path, _isolate_home):
    store, r = _store_with_one_record(tmp_path)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1)
    q.start()
    try:
        for i in range(4):
            q.enqueue([(r.id, {"cue": f"SECRET-CUE-{i}", "session_id": "SECRET-SESSION"})])
        files = list(_overflow(_isolate_home).glob("*.jsonl"))
        assert files
        for f in files:
            assert b"SECRET" not in f.read_bytes()
    finally:
        gate.open.set()
        q.stop()
    assert len(store.get(r.id).provenance) == 4


def test_other_store_spill_files_left_alone(tmp_path, _isolate_home):
    mine = MemoryStore(path=tmp_path / "mine")
    theirs = MemoryStore(path=tmp_path / "theirs")
    r = _make()
    theirs.insert(r)
    gate = Gate(theirs)
    tq = ProvenanceWriteQueue(theirs, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1)
    tq.start()
    for i in range(4):
        tq.enqueue([(r.id, {"cue": f"c{i}"})])
    their_files = sorted(_overflow(_isolate_home).glob("*.jsonl"))
    assert their_files
    # Their worker is wedged; abandon it as a killed process would.
    tq._thread = None
    mq = ProvenanceWriteQueue(mine, coalesce_ms=1)
    mq.start()
    assert mq.flush(timeout=3.0)
    mq.stop()
    assert sorted(_overflow(_isolate_home).glob("*.jsonl")) == their_files
    gate.open.set()


def test_quarantined_files_never_read_again(tmp_path, _isolate_home):
    store = MemoryStore(path=tmp_path / "s")
    overflow = _overflow(_isolate_home)
    overflow.mkdir(parents=True)
    (overflow / "junk.jsonl").write_text("{not json\n")
    # Claims our name but the content is truncated mid-line.
    (overflow / f"prov-{store.store_id}-{0:020d}-{1:08d}.jsonl").write_text('{"iai_mcp_spill": 1, "sto')
    kept = overflow / "old.failed-123.jsonl"
    kept.write_text("left by an earlier quarantine\n")
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=3.0)
    q.stop()
    failed = sorted(p.name for p in overflow.glob("*.failed-*.jsonl"))
    assert len(failed) == 3 and "old.failed-123.jsonl" in failed
    assert kept.read_text() == "left by an earlier quarantine\n"
    assert [p for p in overflow.glob("*.jsonl") if ".failed-" not in p.name] == []
    q2 = ProvenanceWriteQueue(store, coalesce_ms=1)
    q2.start()
    assert q2.flush(timeout=3.0)
    q2.stop()
    assert sorted(p.name for p in overflow.glob("*.failed-*.jsonl")) == failed


def test_stop_on_full_queue_drops_nothing(tmp_path):
    store, r = _store_with_one_record(tmp_path)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=3, max_batch_pairs=2)
    q.start()
    for i in range(40):
        q.enqueue([(r.id, {"cue": f"c{i}"})])
    threading.Timer(0.2, gate.open.set).start()
    q.stop(timeout=10.0)
    assert _cues(store, r.id) == [f"c{i}" for i in range(40)]


def test_one_atexit_registration_however_often_started(tmp_path, monkeypatch):
    import atexit

    registered: list = []
    monkeypatch.setattr(atexit, "register", lambda fn, *a, **k: registered.append(fn) or fn)
    monkeypatch.setattr(atexit, "unregister", lambda fn: registered.remove(fn))
    store = MemoryStore(path=tmp_path / "s")
    q = ProvenanceWriteQueue(store)
    for _ in range(5):
        q.start()
    assert len(registered) == 1
    q.stop()
    assert registered == []
    q.start()
    q.start()
    assert len(registered) == 1
    q.stop()


def test_failed_write_reported_on_stderr_and_retried(tmp_path, capsys):
    store, r = _store_with_one_record(tmp_path)
    Failing(store, times=2, error=OSError("disk on fire"))
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    q.enqueue([(r.id, {"cue": "survives"})])
    assert q.flush(timeout=8.0)
    q.stop()
    assert _cues(store, r.id) == ["survives"]
    lines = [json.loads(l) for l in capsys.readouterr().err.splitlines() if l.startswith("{")]
    failed = [l for l in lines if l["event"] == "provenance_write_failed"]
    assert failed and "disk on fire" in failed[0]["error"]


def test_unwritable_spill_dir_keeps_batches_in_memory(tmp_path, capsys):
    if os.geteuid() == 0:
        # root ignores directory permissions: point the spill dir at a file instead.
        blocker = tmp_path / "blocker"
        blocker.write_text("")
        spill_dir = blocker / "overflow"
    else:
        spill_dir = tmp_path / "ro"
        spill_dir.mkdir(mode=0o500)
    store, r = _store_with_one_record(tmp_path)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1, spill_dir=spill_dir)
    q.start()
    for i in range(5):
        q.enqueue([(r.id, {"cue": f"c{i}"})])
    gate.open.set()
    assert q.flush(timeout=5.0)
    q.stop()
    assert _cues(store, r.id) == [f"c{i}" for i in range(5)]
    assert "provenance_spill_failed" in capsys.readouterr().err


def test_spill_file_that_cannot_be_removed_does_not_kill_the_worker(tmp_path, _isolate_home, monkeypatch, capsys):
    """Its entries are in the log, so the worker carries on; the file is
    removed on a later disk check and never applied twice."""
    store, r = _store_with_one_record(tmp_path)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1)
    q.start()
    q.enqueue([(r.id, {"cue": "c0"})])
    assert gate.entered.wait(5.0)  # c0 is being written, c1 waits in memory, c2 and c3 spill
    for i in range(1, 4):
        q.enqueue([(r.id, {"cue": f"c{i}"})])
    real_unlink = Path.unlink
    refused: list[str] = []

    def unlink(self, missing_ok=False):
        if self.suffix == ".jsonl" and not refused:
            refused.append(self.name)
            raise OSError(errno.EROFS, "Read-only file system")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    gate.open.set()
    assert q.flush(timeout=5.0)
    assert refused and q._thread.is_alive()
    q.enqueue([(r.id, {"cue": "c4"})])
    assert q.flush(timeout=5.0)
    q.stop()
    assert _cues(store, r.id) == [f"c{i}" for i in range(5)]
    assert list(_overflow(_isolate_home).glob("*.jsonl")) == []
    assert '"spill_remove_failed"' in capsys.readouterr().err


def test_worker_survives_an_unexpected_error_and_keeps_the_batch_it_carried(tmp_path, monkeypatch, capsys):
    store, r = _store_with_one_record(tmp_path)
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    real_write = q._write
    calls = {"n": 0}

    def broken_once(batches):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug between taking a batch and writing it")
        return real_write(batches)

    monkeypatch.setattr(q, "_write", broken_once)
    q.start()
    q.enqueue([(r.id, {"cue": "carried"})])
    assert q.flush(timeout=5.0)
    assert q._thread.is_alive()
    q.enqueue([(r.id, {"cue": "after"})])
    assert q.flush(timeout=5.0)
    q.stop()
    assert _cues(store, r.id) == ["carried", "after"]
    errors = [json.loads(l) for l in capsys.readouterr().err.splitlines()
              if l.startswith("{") and '"provenance_worker_error"' in l]
    assert len(errors) == 1 and "a bug" in errors[0]["error"] and "kept 1 batch" in errors[0]["action"]


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, threading, time
    from uuid import UUID
    from iai_mcp.provenance_queue import ProvenanceWriteQueue
    from iai_mcp.store import MemoryStore

    store = MemoryStore(path=sys.argv[1])
    rid = UUID(sys.argv[2])
    store.append_provenance_batch = lambda pairs, records_cache=None: threading.Event().wait()
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1)
    q.start()
    for i in range(30):
        q.enqueue([(rid, {"cue": f"c{i}"})])
    print("spilled", flush=True)
    time.sleep(60)
    """
)


def test_spill_files_replayed_after_kill(tmp_path, _isolate_home):
    root = tmp_path / "s"
    store = MemoryStore(path=root)
    r = _make()
    store.insert(r)
    store.close()
    env = {**os.environ, "HOME": str(_isolate_home)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(root), str(r.id)],
        stdout=subprocess.PIPE, env=env, cwd=Path(__file__).parent.parent,
    )
    try:
        assert proc.stdout.readline().strip() == b"spilled"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    spilled = list(_overflow(_isolate_home).glob("prov-*.jsonl"))
    assert len(spilled) >= 27
    # The first batch was in the wedged writer and the next in memory: only the
    # journal has them. Make the start look like a second try after a restart
    # that died mid-replay: the first five batches already in the log.
    store = MemoryStore(path=root)
    sealer = store.sealer(SEAL_PURPOSE)
    journaled = sorted(
        (int(line.split(b" ", 1)[0]), decode_pairs(sealer.open(base64.b64decode(line.split(b" ", 1)[1]))))
        for path in store.journal_dir.glob("*.journal")
        for line in path.read_bytes().splitlines()[1:]
    )
    assert len(journaled) == 30
    store.append_provenance_batch([pair for _seq, pairs in journaled[:5] for pair in pairs])
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=5.0)
    q.stop()
    # Every accepted batch came back exactly once, in the order it was enqueued.
    assert _cues(store, r.id) == [f"c{i}" for i in range(30)]
    assert list(_overflow(_isolate_home).glob("*.jsonl")) == []
    assert list(store.journal_dir.iterdir()) == []


def test_failed_write_keeps_per_record_order(tmp_path):
    store, r = _store_with_one_record(tmp_path)
    real = store.append_provenance_batch
    first_call = threading.Event()
    release = threading.Event()
    calls = {"n": 0}

    def fail_first(pairs, records_cache=None):
        calls["n"] += 1
        if calls["n"] == 1:
            first_call.set()
            release.wait(5.0)
            raise OSError("transient")
        return real(pairs, records_cache=records_cache)

    store.append_provenance_batch = fail_first  # type: ignore[method-assign]
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_batch_pairs=1)
    q.start()
    q.enqueue([(r.id, {"cue": "c0"})])
    assert first_call.wait(5.0)
    q.enqueue([(r.id, {"cue": "c1"})])  # newer, waiting in memory while c0 fails
    release.set()
    assert q.flush(timeout=8.0)
    q.stop()
    assert _cues(store, r.id) == ["c0", "c1"]


def test_stop_with_a_failing_store_returns_and_the_worker_exits(tmp_path, capsys):
    store, r = _store_with_one_record(tmp_path)
    calls = {"n": 0}

    def always_fails(pairs, records_cache=None):
        calls["n"] += 1
        raise OSError("disk gone")

    store.append_provenance_batch = always_fails  # type: ignore[method-assign]
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    thread = q._thread
    q.enqueue([(r.id, {"cue": "kept"})])
    q.stop(timeout=20.0)
    thread.join(5.0)
    assert not thread.is_alive()
    assert calls["n"] < 50  # no busy retry loop before it gave up, and none after: the worker is gone
    # Nothing lost: the batch waits on disk for the next start.
    del store.append_provenance_batch
    q2 = ProvenanceWriteQueue(store, coalesce_ms=1)
    q2.start()
    assert q2.flush(timeout=5.0)
    q2.stop()
    assert _cues(store, r.id) == ["kept"]


def test_enqueue_after_stop_is_replayed_by_the_next_queue(tmp_path, _isolate_home):
    store, r = _store_with_one_record(tmp_path)
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    q.stop()
    q.enqueue([(r.id, {"cue": "late"})])  # a recall that raced the shutdown
    assert list(_overflow(_isolate_home).glob("prov-*.jsonl"))
    q2 = ProvenanceWriteQueue(store, coalesce_ms=1)
    q2.start()
    assert q2.flush(timeout=5.0)
    q2.stop()
    assert _cues(store, r.id) == ["late"]


# ------------------------------------------------- one pending format, injection


def _lines(path: Path) -> list[bytes]:
    header, *lines = path.read_bytes().splitlines()
    assert json.loads(header)["iai_mcp_pending"] == 1
    return lines


def test_a_spill_reuses_the_journal_line_sealed_once(tmp_path, _isolate_home):
    """Journal segments and spill files are one format: a spilled batch's line
    is byte for byte its journal line (sealed once, at enqueue)."""
    store, r = _store_with_one_record(tmp_path)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1)
    q.start()
    try:
        q.enqueue([(r.id, {"cue": "c0"})])
        assert gate.entered.wait(5.0)  # c0 is being written, c1 waits in memory, c2 and c3 spill
        for i in range(1, 4):
            q.enqueue([(r.id, {"cue": f"c{i}"})])
        spilled = {line for path in _overflow(_isolate_home).glob("*.jsonl") for line in _lines(path)}
        journaled = {line for path in store.journal_dir.glob("*.journal") for line in _lines(path)}
        assert len(spilled) == 2 and len(journaled) == 4
        assert spilled <= journaled
    finally:
        gate.open.set()
        q.stop()
    assert _cues(store, r.id) == [f"c{i}" for i in range(4)]


class FakeSink:
    """Everything the queue needs, without a MemoryStore: it gets its store
    id, its write function, a sealer and a journal directory by injection."""

    store_id = "ab" * 16

    def __init__(self, journal_dir: Path) -> None:
        self.journal_dir = journal_dir
        self.written: list = []

    def append_provenance_batch(self, pairs, records_cache=None):
        self.written.extend(pairs)
        return len(pairs)

    def sealer(self, purpose: str):
        class Reversing:  # stands in for AES-GCM: the queue never looks inside
            seal = open = staticmethod(lambda data: data[::-1])
        return Reversing()


def test_the_queue_runs_on_any_sink_by_injection(tmp_path):
    sink = FakeSink(tmp_path / "journal")
    q = ProvenanceWriteQueue(sink, coalesce_ms=1, spill_dir=tmp_path / "spill")
    q.start()
    q.enqueue([("r1", {"cue": "a"}), ("r2", {"cue": "a"})])
    assert q.flush(timeout=5.0)
    q.stop()
    assert [(p.record_id, p.entry["cue"]) for p in sink.written] == [("r1", "a"), ("r2", "a")]
    assert not hasattr(MemoryStore, "seal_spill") and not hasattr(MemoryStore, "open_spill")


def test_spill_file_with_a_damaged_line_applies_the_rest_then_quarantines(tmp_path, _isolate_home, capsys):
    """Lines are authenticated one by one: the good ones are applied, in
    order, and the file is set aside, never read again."""
    from iai_mcp.provenance_queue.batch import with_ids
    from iai_mcp.provenance_queue.pending import seal_batch
    from iai_mcp.provenance_queue.spill import SpillDir

    store, r = _store_with_one_record(tmp_path)
    sealer = store.sealer(SEAL_PURPOSE)
    good = [(seq, seal_batch(sealer, with_ids([(r.id, {"cue": f"c{seq}"})]))) for seq in (1, 2, 3)]
    spills = SpillDir(_overflow(_isolate_home), store.store_id)
    spills.write([good[0], (9, base64.b64encode(b"sealed by someone else" * 2)), good[1]])
    spills.write([good[2]])
    first, second = spills.files()
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=5.0)
    q.stop()
    assert _cues(store, r.id) == ["c1", "c2", "c3"]
    (quarantined,) = _overflow(_isolate_home).glob("*.failed-*.jsonl")
    assert quarantined.name.startswith(first.stem) and not first.exists() and not second.exists()
    err = capsys.readouterr().err
    assert '"pending_line_unreadable"' in err and '"pending_quarantined"' in err
