"""Faults: a full disk, unreadable or foreign journal files, a loose key file,
and the repair that fixes what it can."""
from __future__ import annotations

import base64
import errno
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iai_mcp import fs
from iai_mcp.core import dispatch
from iai_mcp.core.capture import CaptureRequest, capture_many
from iai_mcp.core.repair import repair
from iai_mcp.provenance_queue import ProvenanceWriteQueue, pending
from iai_mcp.provenance_queue.batch import with_ids
from iai_mcp.provenance_queue.journal import Journal
from iai_mcp.provenance_queue.pending import SEAL_PURPOSE, decode_pairs, encode_pairs
from iai_mcp.provenance_queue.spill import SpillDir
from iai_mcp.store import MemoryStore
from tests.test_provenance_queue import Failing, Gate
from tests.test_store import _all_bytes_under, _make

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")


def _events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _named(err: str, event: str) -> list[dict]:
    return [e for e in _events(err) if e["event"] == event]


def _fill(store: MemoryStore, n: int = 12) -> None:
    capture_many(store, store.embedder, [CaptureRequest(text=f"note {i} about the release plan") for i in range(n)])


def _recall(store: MemoryStore, cue: str) -> list[str]:
    result = dispatch(store, "memory_recall", {"cue": cue, "session_id": "s", "k": 3})
    assert result["hits"], "recall must keep working"
    return [hit["record_id"] for hit in result["hits"]]


def _assert_each_once(store: MemoryStore, returned: dict[str, list[str]]) -> None:
    for cue, record_ids in returned.items():
        for rid in record_ids:
            cues = [e["cue"] for e in store.provenance_of(rid)]
            assert cues.count(cue) == 1, (cue, rid, cues)


def _wait_for(condition, timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (for state with no event)."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        tick.wait(0.02)
    return bool(condition())


def _journal_lines(store: MemoryStore) -> list[tuple[int, list]]:
    """Every line in the store's journal files, decoded; fails on any bad byte."""
    out = []
    for path in sorted(store.journal_dir.glob("*.journal")):
        header, *lines = path.read_bytes().split(b"\n")
        assert json.loads(header)["store_id"] == store.store_id
        assert lines[-1] == b"", f"{path.name} ends in a torn line"
        for line in lines[:-1]:
            seq, payload = line.split(b" ", 1)
            blob = base64.b64decode(payload, validate=True)
            out.append((int(seq), decode_pairs(store.sealer(SEAL_PURPOSE).open(blob))))
    return sorted(out, key=lambda line: line[0])


class FullDisk:
    """os.write fails with ENOSPC on journal files while ``full`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, short: bool = False) -> None:
        self.full = threading.Event()
        self.full.set()
        self.short = short  # write half the line and report that, as a filling disk does
        real = os.write

        def write(fd: int, data: bytes) -> int:
            if self.full.is_set() and self._is_journal(fd):
                if self.short:
                    self.full.clear()
                    return real(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)

    @staticmethod
    def _is_journal(fd: int) -> bool:
        try:
            return f"{os.sep}journal{os.sep}" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False


# ------------------------------------------------------------- disk full


@needs_proc
def test_full_disk_while_journaling_keeps_recall_working_and_loses_nothing(store, monkeypatch, capsys):
    _fill(store)
    store.enable_provenance_queue(coalesce_ms=1)
    disk = FullDisk(monkeypatch)
    gate = Gate(store)  # hold the log so the refused batches are still pending when space returns
    returned = {f"full {i}": _recall(store, f"full {i}") for i in range(5)}
    failed = _named(capsys.readouterr().err, "journal_write_failed")
    assert len(failed) == 1 and "No space left" in failed[0]["error"]  # one line, not one per batch
    disk.full.clear()
    returned["after"] = _recall(store, "after")
    assert _named(capsys.readouterr().err, "journal_write_recovered")
    # Space is back: the batches the journal refused are in it now, so a kill
    # from here on would lose none of them.
    journaled = {pair.entry["cue"] for _seq, pairs in _journal_lines(store) for pair in pairs}
    assert set(returned) <= journaled
    gate.open.set()
    assert store._provenance_queue.flush(timeout=10)
    _assert_each_once(store, returned)


@needs_proc
def test_short_journal_write_is_cut_back_not_left_torn(store, monkeypatch, capsys):
    _fill(store)
    gate = Gate(store)
    store.enable_provenance_queue(coalesce_ms=1)
    FullDisk(monkeypatch, short=True)
    returned = {f"cue {i}": _recall(store, f"cue {i}") for i in range(3)}
    assert "short write" in _named(capsys.readouterr().err, "journal_write_failed")[0]["error"]
    # The half line was cut off and the refused batch appended again later.
    lines = _journal_lines(store)
    assert [seq for seq, _ in lines] == [1, 2, 3]
    gate.open.set()
    assert store._provenance_queue.flush(timeout=10)
    _assert_each_once(store, returned)


def test_journal_directory_blocked_then_freed(store, capsys):
    _fill(store)
    blocker = store.journal_dir
    blocker.write_text("not a directory")
    store.enable_provenance_queue(coalesce_ms=1)
    assert _named(capsys.readouterr().err, "journal_unavailable")
    returned = {"blocked": _recall(store, "blocked")}
    assert store._provenance_queue.flush(timeout=10)
    _assert_each_once(store, returned)
    blocker.unlink()
    # The worker retries after each write; one more recall gives it a turn.
    returned["freed"] = _recall(store, "freed")
    assert store._provenance_queue.flush(timeout=10)
    gate = Gate(store)
    assert _wait_for(lambda: list(store.journal_dir.glob("*.journal")), timeout=5)
    returned["journaled"] = _recall(store, "journaled")
    assert "journaled" in {p.entry["cue"] for _seq, pairs in _journal_lines(store) for p in pairs}
    assert _named(capsys.readouterr().err, "journal_available_again")
    gate.open.set()
    assert store._provenance_queue.flush(timeout=10)
    _assert_each_once(store, returned)


def test_spill_and_journal_both_refused_keeps_everything_in_memory(tmp_path, fake_embedder, capsys):
    store = MemoryStore(path=tmp_path / "s", embedder=fake_embedder)
    r = _make()
    store.insert(r)
    store.journal_dir.write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, max_queue_size=1, max_batch_pairs=1, spill_dir=blocker / "x")
    q.start()
    for i in range(6):
        q.enqueue([(r.id, {"cue": f"c{i}"})])
    err = capsys.readouterr().err
    assert _named(err, "provenance_spill_failed") and _named(err, "journal_unavailable")
    gate.open.set()
    assert q.flush(timeout=10)
    q.stop()
    assert [e["cue"] for e in store.provenance_of(r.id)] == [f"c{i}" for i in range(6)]
    store.close()


# ------------------------------------------------ unreadable or foreign files


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(
    st.tuples(st.uuids(), st.dictionaries(st.text(max_size=12), json_values, max_size=4), st.booleans()),
    max_size=12,
))
def test_journal_line_round_trip_property(batch):
    """Whatever a line holds comes back exactly: ids, entries, order (runs of
    equal entries included)."""
    pairs, previous = [], {"cue": "first"}
    for record_id, entry, same_as_previous in batch:
        entry = dict(previous) if same_as_previous else entry
        pairs.append((record_id, entry))
        previous = entry
    sent = with_ids(pairs)
    back = decode_pairs(encode_pairs(sent))
    assert [(p.record_id, p.entry, p.entry_id) for p in back] == [
        (p.record_id.hex, p.entry, p.entry_id) for p in sent
    ]


def test_journal_holds_no_plaintext(store):
    _fill(store)
    gate = Gate(store)
    store.enable_provenance_queue(coalesce_ms=1)
    _recall(store, "PELICAN-HARBOUR-4417 launch code")
    assert gate.entered.wait(5)
    data = b"".join(p.read_bytes() for p in store.journal_dir.iterdir())
    assert len(_journal_lines(store)) == 1
    assert b"PELICAN" not in data and b"session" not in data
    gate.open.set()


def _dead_queue_journal(store: MemoryStore, batches: list[list[tuple]]) -> Path:
    """Journal ``batches`` as a queue would, then die: file left, lock released."""
    sealer = store.sealer(SEAL_PURPOSE)
    journal = Journal(store.journal_dir, store.store_id, sealer, lambda *a, **k: None)
    journal.open()
    for seq, pairs in enumerate(batches, start=1):
        journal.append(seq, pending.seal_batch(sealer, with_ids(pairs)), durable_upto=0)
    assert journal.close(durable_upto=0)
    (path,) = [p for p in store.journal_dir.glob("*.journal") if journal.queue_id in p.name]
    assert len(path.read_bytes().splitlines()) == 1 + len(batches)  # header, then every batch
    return path


def _start_and_stop(store: MemoryStore) -> None:
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=5)
    q.stop()


def test_torn_last_line_ignored_rest_applied(tmp_path, capsys):
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    path = _dead_queue_journal(store, [[(r.id, {"cue": "a"})], [(r.id, {"cue": "b"})]])
    with open(path, "ab") as fh:
        fh.write(b"3 c2VhbGVkIGJ1dCBjdXQgb2Zm")  # the kill came mid-write: no newline
    _start_and_stop(store)
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["a", "b"]
    assert _named(capsys.readouterr().err, "pending_torn_tail")
    assert list(store.journal_dir.iterdir()) == []


def test_unreadable_line_applies_the_rest_then_quarantines(tmp_path, capsys):
    store = MemoryStore(path=tmp_path / "s")
    other = MemoryStore(path=tmp_path / "other")
    r = _make()
    store.insert(r)
    good = _dead_queue_journal(store, [[(r.id, {"cue": "a"})], [(r.id, {"cue": "b"})]])
    header, first, second, _ = good.read_bytes().split(b"\n")
    # A line sealed by another store's key, and plain garbage, between good ones.
    foreign = _dead_queue_journal(other, [[(r.id, {"cue": "theirs"})]]).read_bytes().split(b"\n")[1]
    good.write_bytes(b"\n".join([header, first, foreign.replace(b"1 ", b"2 ", 1), b"not a line", second, b""]))
    clean = _dead_queue_journal(store, [[(r.id, {"cue": "c"})]])
    _start_and_stop(store)
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["a", "b", "c"]
    assert len(_named(capsys.readouterr().err, "pending_line_unreadable")) == 2
    assert not clean.exists()
    (quarantined,) = store.journal_dir.glob("*.failed-*")
    kept = quarantined.read_bytes()
    _start_and_stop(store)  # never read again, never applied again
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["a", "b", "c"]
    assert quarantined.read_bytes() == kept
    other.close()


def test_other_stores_journal_never_applied_or_removed(tmp_path, capsys):
    store = MemoryStore(path=tmp_path / "s")
    other = MemoryStore(path=tmp_path / "other")
    r = _make()
    store.insert(r)
    other.insert(r)  # same record id in both: applying theirs here would show
    theirs = _dead_queue_journal(other, [[(r.id, {"cue": "theirs"})]])
    store.journal_dir.mkdir()
    copied = store.journal_dir / theirs.name
    copied.write_bytes(theirs.read_bytes())
    # The same bytes renamed as if they were ours: the header gives them away.
    disguised = store.journal_dir / theirs.name.replace(other.store_id, store.store_id)
    disguised.write_bytes(theirs.read_bytes())
    stray = store.journal_dir / "notes.txt"
    stray.write_text("not a journal")
    temp = store.journal_dir / f".prov-{store.store_id}-{0:020d}-1-000001.journal.tmp"
    temp.write_bytes(b"")
    _start_and_stop(store)
    assert store.provenance_of(r.id) == []
    assert copied.read_bytes() == theirs.read_bytes()
    assert stray.read_text() == "not a journal"
    assert not disguised.exists() and not temp.exists()
    assert "another" in _named(capsys.readouterr().err, "pending_quarantined")[0]["reason"]
    other.close()


def test_live_queues_journal_is_not_touched(tmp_path):
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    gate = Gate(store)
    live = ProvenanceWriteQueue(store, coalesce_ms=1)
    live.start()
    live.enqueue([(r.id, {"cue": "pending"})])
    assert gate.entered.wait(5)
    files = {p: p.read_bytes() for p in store.journal_dir.glob("*.journal")}
    assert any(b"\n1 " in data for data in files.values())
    other = ProvenanceWriteQueue(store, coalesce_ms=1)
    other.start()  # must neither apply nor remove what the live queue holds
    assert {p: p.read_bytes() for p in files} == files
    other.stop()
    gate.open.set()
    live.stop()
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["pending"]
    assert list(store.journal_dir.iterdir()) == []


# ----------------------------------------------------------- key and repair


def test_loose_key_file_warns_and_repair_fixes_it(tmp_path, capsys):
    root = tmp_path / "s"
    MemoryStore(path=root).close()
    key = root / "key"
    key.chmod(0o644)
    with MemoryStore(path=root):
        pass
    (warning,) = _named(capsys.readouterr().err, "key_file_mode_loose")
    assert "chmod 600" in warning["problem"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o644  # opening never changes it behind your back
    planned = repair(root, apply=False)
    assert any("would make the key file mode 0600" in line for line in planned)
    assert stat.S_IMODE(key.stat().st_mode) == 0o644
    done = repair(root, apply=True)
    assert any("made the key file mode 0600" in line for line in done)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    capsys.readouterr()  # the dry run opened the store to look for damage, and warned then
    with MemoryStore(path=root):
        pass
    assert not _named(capsys.readouterr().err, "key_file_mode_loose")


def test_repair_dry_run_changes_nothing_then_apply_recovers(tmp_path, _isolate_home):
    root = tmp_path / "s"
    store = MemoryStore(path=root)
    r = _make()
    store.insert(r)
    for i in range(3):
        store.update(r.id, tags=[f"t{i}"])  # versions for compaction to fold
    _dead_queue_journal(store, [[(r.id, {"cue": "from the journal"})]])
    store.close()
    stray = fs.temp_path(root / "meta.json")  # what a write_atomic killed before its rename leaves
    stray.write_text("{half a meta")
    before = sorted(str(p) for p in root.rglob("*")), _all_bytes_under(root)
    planned = repair(root, apply=False)
    assert (sorted(str(p) for p in root.rglob("*")), _all_bytes_under(root)) == before
    assert any("would move stray temp file" in line for line in planned)
    assert any("would replay 1 journal segment" in line for line in planned)
    assert any("would compact" in line for line in planned)
    done = repair(root, apply=True)
    assert any("1 provenance entries were missing" in line for line in done), done
    assert any(line.startswith("compacted the records table") for line in done), done
    (moved,) = (root / "recovered").rglob(stray.name)
    assert moved.read_text() == "{half a meta"
    assert repair(root, apply=True) == ["nothing to repair"]
    with MemoryStore(path=root) as reopened:
        assert [e["cue"] for e in reopened.provenance_of(r.id)] == ["from the journal"]
        assert reopened.stats()["versions"] == 1


def test_repair_skips_store_steps_while_another_process_has_it(tmp_path):
    root = tmp_path / "s"
    with MemoryStore(path=root) as store:
        _dead_queue_journal(store, [[(_make().id, {"cue": "x"})]])
        lines = repair(root, apply=True)
    assert any(line.startswith("skipped replay and compaction") for line in lines), lines


def test_entry_that_cannot_be_journaled_does_not_take_the_journal_down(store, capsys):
    """A lone surrogate cannot be UTF-8: the log skips that entry (and says
    so), the journal leaves it out, and the rest of the batch is journaled."""
    r = _make()
    store.insert(r)
    q = store.enable_provenance_queue(coalesce_ms=1)
    gate = Gate(store)
    q.enqueue([(r.id, {"cue": "bad \ud800"}), (r.id, {"cue": "good"})])
    assert gate.entered.wait(5)
    assert [p.entry["cue"] for _seq, pairs in _journal_lines(store) for p in pairs] == ["good"]
    gate.open.set()
    assert q.flush(timeout=5)
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["good"]
    err = capsys.readouterr().err
    assert not _named(err, "journal_write_failed") and not _named(err, "provenance_seal_failed")


def test_wrong_key_leaves_the_journal_for_the_right_one(tmp_path):
    root = tmp_path / "s"
    store = MemoryStore(path=root)
    r = _make()
    store.insert(r)
    _dead_queue_journal(store, [[(r.id, {"cue": "kept for the right key"})]])
    store.close()
    key = root / "key"
    right = key.read_bytes()
    key.write_text(base64.b64encode(os.urandom(32)).decode())
    snapshot = _all_bytes_under(root)
    from iai_mcp.errors import WrongKey

    with pytest.raises(WrongKey, match="Restore the right key"):
        MemoryStore(path=root).enable_provenance_queue()
    assert _all_bytes_under(root) == snapshot
    key.write_bytes(right)
    with MemoryStore(path=root) as reopened:
        reopened.enable_provenance_queue()
        assert [e["cue"] for e in reopened.provenance_of(r.id)] == ["kept for the right key"]


def test_journal_segment_rotates_under_steady_traffic(tmp_path, monkeypatch):
    """With something always in flight the active segment is never fully
    durable; it must still rotate, so the journal stays bounded."""
    import iai_mcp.provenance_queue.journal as journal_mod
    from iai_mcp.provenance_queue import ProvenanceWriteQueue
    from iai_mcp.store import MemoryStore
    from tests.test_store import _make

    monkeypatch.setattr(journal_mod, "SEGMENT_ROTATE_BYTES", 4096)
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    real = store.append_provenance_batch

    def slowish(pairs, records_cache=None):
        time.sleep(0.003)
        return real(pairs, records_cache=records_cache)

    store.append_provenance_batch = slowish  # type: ignore[method-assign]
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    largest = 0
    for i in range(600):
        q.enqueue([(r.id, {"cue": f"steady {i}", "session_id": "s"})])
        time.sleep(0.001)
        if i % 50 == 0:
            largest = max([largest, *(p.stat().st_size for p in store.journal_dir.iterdir() if p.is_file())])
    assert q.flush(timeout=10.0)
    q.stop()
    assert largest < 4096 * 4
    assert len(store.get(r.id).provenance) == 600


def test_journal_written_before_the_one_format_still_replays(tmp_path):
    """Journals used to carry their own header name; the lines were already
    this format, so a journal a killed older version left is not lost."""
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    path = _dead_queue_journal(store, [[(r.id, {"cue": "from an older version"})]])
    header, rest = path.read_bytes().split(b"\n", 1)
    old = json.dumps({"iai_mcp_journal": 1, "store_id": store.store_id}).encode()
    path.write_bytes(old + b"\n" + rest)
    _start_and_stop(store)
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["from an older version"]
    assert list(store.journal_dir.iterdir()) == []


def _previous_release_spill(store: MemoryStore, directory: Path, pairs: list, counter: int) -> Path:
    """A spill file exactly as the previous release's ``SpillDir.write`` made
    it (src/iai_mcp/spill.py at 691004b): one batch per file, sealed whole
    for the same purpose, under a name of the same pattern."""
    directory.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        [[str(p.record_id), p.entry, p.entry_id] for p in pairs], ensure_ascii=False
    ).encode("utf-8")
    sealed = base64.b64encode(store.sealer(SEAL_PURPOSE).seal(body)).decode("ascii")
    header = {"iai_mcp_spill": 1, "store_id": store.store_id}
    name = f"prov-{store.store_id}-{time.time_ns():020d}-{counter:08d}"
    tmp = directory / f".{name}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(json.dumps(header) + "\n" + json.dumps({"sealed": sealed}) + "\n")
    os.replace(tmp, directory / f"{name}.jsonl")
    return directory / f"{name}.jsonl"


def test_spill_files_the_previous_release_wrote_are_applied_after_an_upgrade(tmp_path, _isolate_home, capsys):
    """They were quarantined unapplied: the batches a daemon spilled just
    before the upgrade must reach the log, in order, and the files go."""
    store = MemoryStore(path=tmp_path / "s")
    a, b = _make(text="a"), _make(text="b")
    store.insert(a)
    store.insert(b)
    overflow = _isolate_home / ".iai-mcp" / ".provenance-overflow"
    _previous_release_spill(store, overflow, with_ids([(a.id, {"cue": "old 1"}), (b.id, {"cue": "old 1"})]), 1)
    _previous_release_spill(store, overflow, with_ids([(a.id, {"cue": "old 2"})]), 2)
    _start_and_stop(store)
    assert [e["cue"] for e in store.provenance_of(a.id)] == ["old 1", "old 2"]
    assert [e["cue"] for e in store.provenance_of(b.id)] == ["old 1"]
    assert list(overflow.iterdir()) == []  # removed, none quarantined
    assert not _named(capsys.readouterr().err, "pending_quarantined")


def _spill_file(store: MemoryStore, home: Path, cues: list[str], record_id) -> Path:
    """A spill file of this store, as a queue that died after spilling left it."""
    sealer = store.sealer(SEAL_PURPOSE)
    spills = SpillDir(home / ".iai-mcp" / ".provenance-overflow", store.store_id)
    spills.write([(seq, pending.seal_batch(sealer, with_ids([(record_id, {"cue": cue})])))
                  for seq, cue in enumerate(cues, start=1)])
    return spills.files()[-1]


def test_journal_segment_that_cannot_be_removed_does_not_block_the_spill(tmp_path, _isolate_home, monkeypatch, capsys):
    """Its entries are in the log: a failing unlink is not a failed replay.
    It used to be, on every disk check, so spill files never drained and
    flush never returned True."""
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    segment = _dead_queue_journal(store, [[(r.id, {"cue": "journaled"})]])
    _spill_file(store, _isolate_home, ["spilled"], r.id)
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == segment:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=5)
    assert q.flush(timeout=5)  # a second disk check: retried quietly, not applied again
    q.stop()
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["journaled", "spilled"]
    assert len(_named(capsys.readouterr().err, "journal_remove_failed")) == 1
    assert segment.exists()
    monkeypatch.undo()
    _start_and_stop(store)  # the next start applies it again, harmlessly, and removes it
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["journaled", "spilled"]
    assert list(store.journal_dir.iterdir()) == []


def test_journal_that_cannot_be_listed_does_not_block_the_spill(tmp_path, _isolate_home, monkeypatch, capsys):
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    _spill_file(store, _isolate_home, ["spilled"], r.id)
    real_ours = pending.ours

    def ours(directory, store_id, suffix):
        if suffix == pending.JOURNAL_SUFFIX:
            raise PermissionError(errno.EACCES, "Permission denied", str(directory))
        return real_ours(directory, store_id, suffix)

    monkeypatch.setattr(pending, "ours", ours)
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=5)
    assert q.flush(timeout=5)
    q.stop()
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["spilled"]
    assert len(_named(capsys.readouterr().err, "journal_unlisted")) == 1  # once per outage


def test_spill_waits_while_the_store_refuses_a_dead_queues_journal(tmp_path, _isolate_home):
    """A dead queue's journal is older than our spill files: while the store
    refuses the journal, the spill waits, so a record's entries keep their
    order once the store takes them."""
    store = MemoryStore(path=tmp_path / "s")
    r = _make()
    store.insert(r)
    _dead_queue_journal(store, [[(r.id, {"cue": "older"})]])
    _spill_file(store, _isolate_home, ["newer"], r.id)
    refusals = Failing(store, times=3, error=OSError("database is locked"),
                       when=lambda pairs: any(p.entry["cue"] == "older" for p in pairs))
    q = ProvenanceWriteQueue(store, coalesce_ms=1)
    q.start()
    assert q.flush(timeout=10)
    q.stop()
    assert refusals.left == 0
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["older", "newer"]


def _stop_with_an_unsealable_batch(store: MemoryStore, monkeypatch, **options):
    """Hang the store on c0, hold c1, an unsealable batch and c2 in memory, stop."""
    r = _make()
    store.insert(r)
    real_seal = pending.seal_batch

    def seal(sealer, pairs):
        if any(p.entry["cue"] == "unsealable" for p in pairs):
            raise ValueError("cannot seal this one")
        return real_seal(sealer, pairs)

    monkeypatch.setattr(pending, "seal_batch", seal)
    gate = Gate(store)
    q = ProvenanceWriteQueue(store, coalesce_ms=1, **options)
    q.start()
    q.enqueue([(r.id, {"cue": "c0"})])
    assert gate.entered.wait(5)
    for cue in ("c1", "unsealable", "c2"):
        q.enqueue([(r.id, {"cue": cue})])
    thread = q._thread
    q.stop(timeout=0.2)  # the worker cannot finish: what memory holds is kept on disk
    gate.open.set()
    thread.join(10)
    return r


def test_a_batch_that_could_not_be_sealed_does_not_stop_the_others_spilling(tmp_path, _isolate_home,
                                                                           monkeypatch, capsys):
    store = MemoryStore(path=tmp_path / "s")
    overflow = _isolate_home / ".iai-mcp" / ".provenance-overflow"
    spilled_at_stop = []
    real_write = SpillDir.write

    def write(self, lines):
        spilled_at_stop.append(len(lines))
        return real_write(self, lines)

    monkeypatch.setattr(SpillDir, "write", write)
    r = _stop_with_an_unsealable_batch(store, monkeypatch)
    assert spilled_at_stop == [2]  # c1 and c2; the unsealable one no longer refuses the spill for all
    err = capsys.readouterr().err
    (lost,) = _named(err, "provenance_lost")
    assert lost["batches"] == 1 and lost["pairs"] == 1
    assert not _named(err, "provenance_left_in_journal")
    _start_and_stop(store)
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["c0", "c1", "c2"]
    assert [p for p in overflow.glob("*.jsonl")] == []


def test_stop_says_truly_what_the_journal_holds_when_the_spill_refuses(tmp_path, monkeypatch, capsys):
    store = MemoryStore(path=tmp_path / "s")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    r = _stop_with_an_unsealable_batch(store, monkeypatch, spill_dir=blocker / "overflow")
    err = capsys.readouterr().err
    assert _named(err, "provenance_spill_failed")
    (in_journal,) = _named(err, "provenance_left_in_journal")
    assert in_journal["batches"] == 2  # c1 and c2: the unsealable batch was never journaled
    (lost,) = _named(err, "provenance_lost")
    assert lost["batches"] == 1
    _start_and_stop(store)  # the journal replays what it holds
    assert [e["cue"] for e in store.provenance_of(r.id)] == ["c0", "c1", "c2"]


def test_repair_moves_every_stray_temp_of_this_store_only(tmp_path, _isolate_home):
    """One temp naming scheme (fs.temp_path) for meta, journal segments and
    spill files; another store's temp in the shared spill directory stays."""
    root = tmp_path / "s"
    with MemoryStore(path=root) as store:
        store_id = store.store_id
        journal_dir = store.journal_dir
    journal_dir.mkdir()
    spill = _isolate_home / ".iai-mcp" / ".provenance-overflow"
    spill.mkdir(parents=True)
    ours = [
        fs.temp_path(journal_dir / f"prov-{store_id}-{1:020d}-7-000001.journal"),
        fs.temp_path(spill / f"prov-{store_id}-{1:020d}-00000001.jsonl"),
    ]
    theirs = fs.temp_path(spill / f"prov-{'0' * 32}-{1:020d}-00000001.jsonl")
    for path in [*ours, theirs]:
        path.write_bytes(b"half a file")
    planned = repair(root, apply=False)
    assert sum("would move stray temp file" in line for line in planned) == 2, planned
    repair(root, apply=True)
    assert not any(p.exists() for p in ours) and theirs.exists()
    assert len(list((root / "recovered").rglob("*.tmp"))) == 2


def test_repair_dry_run_counts_versions_while_the_store_is_open_elsewhere(tmp_path):
    """The version count comes from LanceDB's public list_versions, without
    the key or the owner lock, so a dry run works next to a running daemon."""
    root = tmp_path / "s"
    with MemoryStore(path=root) as store:
        r = _make()
        store.insert(r)
        for i in range(3):
            store.update(r.id, tags=[f"t{i}"])
        versions = store.stats()["versions"]
        assert versions > 1
        assert any(f"would compact the records table ({versions} versions)" in line
                   for line in repair(root, apply=False))
