"""Purge removes a record from every file of the store, and survives kill -9.

The central check reads the raw bytes of every file under the store directory
(and the provenance overflow directory) and looks for the purged record's id
(with and without dashes), its sealed payload and its sealed vector, as they
were in the LanceDB table before the purge.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from uuid import UUID

import lancedb
import pytest

from iai_mcp import config
from iai_mcp.core import dispatch
from iai_mcp.errors import NotFound
from iai_mcp.store import PURGED, MemoryStore
from iai_mcp.store.purge import INTENT_FILE

SRC = Path(__file__).resolve().parents[1] / "src"


def sealed_bytes(root: Path, record_id: str) -> tuple[bytes, bytes]:
    """The record's sealed payload and vector as the LanceDB table holds them."""
    table = lancedb.connect(str(root)).open_table("records").search().limit(None).to_arrow()
    ids = table.column("id").to_pylist()
    i = ids.index(record_id)
    return table.column("payload")[i].as_py(), table.column("vector")[i].as_py()


def needles(root: Path, record_id: str) -> dict[str, bytes]:
    payload, vector = sealed_bytes(root, record_id)
    rid = UUID(record_id)
    return {
        "id": str(rid).encode(), "id (hex)": rid.hex.encode(), "id (upper)": str(rid).upper().encode(),
        "sealed payload": payload, "sealed vector": vector,
    }


def scan(dirs: list[Path], found: dict[str, bytes]) -> list[str]:
    hits = []
    for directory in dirs:
        for path in directory.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                hits += [f"{name} in {path}" for name, needle in found.items() if needle in data]
    return hits


def fill(store, n: int = 30, prefix: str = "memory") -> list[str]:
    ids = [dispatch(store, "memory_capture", {"text": f"{prefix} number {i} about cats and dogs",
                                              "session_id": "s1", "tags": ["t"]})["record_id"]
           for i in range(n)]
    for i in range(3):  # provenance for every kind of id
        dispatch(store, "memory_recall", {"cue": f"{prefix} number {i} cats"})
    return ids


def test_purge_leaves_no_byte_of_the_record_in_any_file(store):
    ids = fill(store)
    victim = ids[1]
    dispatch(store, "memory_recall", {"cue": "memory number 1 about cats and dogs"})
    assert store.get(victim).provenance, "the victim needs provenance for this test to mean something"
    store.compact()  # one big fragment: the case where a plain delete leaves the bytes
    for i in range(3):  # ...and newer small fragments and versions on top
        dispatch(store, "memory_capture", {"text": f"later {i}"})
    found = needles(store.root, victim)
    assert scan([store.root], found), "sanity: the needles are on disk before the purge"

    out = dispatch(store, "memory_forget", {"ids": [victim], "mode": "purge"})
    assert out["forgotten"] == [victim] and out["mode"] == "purge" and out["undo_until"] is None

    assert scan([store.root, config.overflow_dir()], found) == []
    # Memory: the slot is emptied, the rest is as it was.
    index = [str(r.id) for r in store.rows()].index(ids[0]) + 1
    assert store.states()[index] == PURGED and store.rows()[index].literal_surface == ""
    assert not store.vectors()[0][index].any()
    assert store.get(victim) is None and store.row(UUID(victim)) is None
    with pytest.raises(NotFound):
        dispatch(store, "memory_get", {"id": victim})
    assert store.stats()["records"] == 32
    # Recall still works and never returns it.
    hits = dispatch(store, "memory_recall", {"cue": "memory number 1 about cats and dogs", "k": 50})["hits"]
    assert victim not in {h["record_id"] for h in hits}
    others = set(ids) - {victim}
    assert all(store.get(UUID(i)).literal_surface for i in others)
    store.close()

    reopened = MemoryStore(path=store.root)
    try:
        assert {str(r.id) for r in reopened.rows()} >= others and victim not in {str(r.id) for r in reopened.rows()}
        assert len(reopened) == 32 and not (store.root / INTENT_FILE).exists()
    finally:
        reopened.close()
    assert scan([store.root, config.overflow_dir()], found) == []


def test_purge_through_the_provenance_queue(store):
    """A recall's provenance still queued when the purge starts reaches the
    log and is purged with the rest; none is written after."""
    ids = fill(store, 10)
    store.enable_provenance_queue(coalesce_ms=200)
    victim = ids[0]
    dispatch(store, "memory_recall", {"cue": "memory number 0 about cats and dogs", "k": 3})
    found = needles(store.root, victim)
    dispatch(store, "memory_forget", {"ids": [victim], "mode": "purge"})
    store.queue_provenance_batch([(UUID(victim), {"ts": "x", "cue": "late", "session_id": None})])
    assert store.flush_provenance(10)
    store.disable_provenance_queue()
    assert scan([store.root, config.overflow_dir()], found) == []


def test_purge_unknown_id_changes_nothing(store):
    ids = fill(store, 5)
    before = [r.id for r in store.rows()]
    with pytest.raises(NotFound, match="00000000-0000-0000-0000-00000000000f"):
        store.purge([UUID(ids[0]), UUID(int=15)])
    assert [r.id for r in store.rows()] == before and not (store.root / INTENT_FILE).exists()


def test_identical_text_still_found_after_its_first_holder_is_purged(store, fake_embedder):
    from tests.test_store import _make

    first, second = _make(text="same words"), _make(text="same words")
    store.insert_many([first, second])
    store.purge([first.id])
    assert store.find_identical("same words").id == second.id


def test_log_lines_never_name_a_record_id():
    """Every log call in src names a record by ``log_name`` (a keyed digest), never by id."""
    import re

    offenders = []
    for path in (SRC / "iai_mcp").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\blog\w*(\.\w+)?\(.*\brecord_id=", line) or re.search(r"_log\w*\(.*\bid=str\(", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


# ------------------------------------------------------------- kill -9

_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from datetime import datetime, timedelta, timezone
    from uuid import UUID
    from iai_mcp.embed import HashEmbedder
    from iai_mcp.store import MemoryStore, purge as purging
    from iai_mcp.store.provenance_log import ProvenanceLog
    from iai_mcp.store.records_table import RecordsTable
    from iai_mcp.core import lifecycle

    def die_after(owner, name):
        original = getattr(owner, name)
        def wrapped(*args, **kwargs):
            original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        setattr(owner, name, wrapped)

    point = sys.argv[4]
    if point != "timed":  # a kill right after each step of a purge
        owner = {"intent": purging, "provenance": ProvenanceLog, "commit": RecordsTable,
                 "cleanup": RecordsTable}[point]
        die_after(owner, {"intent": "write_intent", "provenance": "purge", "commit": "_commit_purge",
                          "cleanup": "cleanup"}[point])
    store = MemoryStore(sys.argv[1], embedder=HashEmbedder())
    ids = [UUID(i) for i in sys.argv[3].split(",")]
    print("ready", flush=True)
    if sys.argv[2] == "purge":
        store.purge(ids)
    else:
        lifecycle.purge_expired(store, datetime.now(timezone.utc) + timedelta(days=365))
    print("done", flush=True)
""")


def _consistent(root: Path, victims: list[str], survivors: list[str]) -> str:
    """'before' or 'after' (every victim whole, or every victim gone from
    rows, text and provenance); fails on anything in between."""
    store = MemoryStore(path=root)
    try:
        assert not (root / INTENT_FILE).exists()
        for rid in survivors:
            record = store.get(rid)
            assert record is not None and record.literal_surface and record.provenance
        present = [store.get(rid) for rid in victims]
        if all(r is None for r in present):
            assert all(not store.provenance_of(UUID(rid)) for rid in victims)
            return "after"
        assert all(r is not None and r.literal_surface and r.provenance for r in present), "half purged"
        return "before"
    finally:
        store.close()


KILLS = [("intent", 0.0), ("provenance", 0.0), ("commit", 0.0), ("cleanup", 0.0),
         *[("timed", delay) for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4)]]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["purge", "auto"])
def test_kill_9_during_purge_leaves_before_or_after(tmp_path, fake_embedder, mode):
    outcomes = []
    for attempt, (point, delay) in enumerate(KILLS):
        root = tmp_path / f"s{attempt}"
        store = MemoryStore(path=root, embedder=fake_embedder)
        ids = fill(store, 40, prefix=f"a{attempt}")
        for rid in ids:
            store.append_provenance_batch([(UUID(rid), {"ts": "t", "cue": "c", "session_id": None})])
        victims, survivors = ids[::3], [i for i in ids if i not in ids[::3]]
        store.compact()
        if mode == "auto":
            dispatch(store, "memory_forget", {"ids": victims})
        store.close()
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), mode, ",".join(victims), point],
                                 stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline().strip() == b"ready"
        if point == "timed":
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL or point == "timed"
        outcomes.append(_consistent(root, victims, survivors))
        if point != "timed":
            assert outcomes[-1] == "after", f"killed after {point}: the reopen finishes the purge"
        if outcomes[-1] == "after":
            assert scan([root], {f"id {v}": v.encode() for v in victims}) == []
    assert "after" in outcomes


# ------------------------------------------------- a purge that cannot finish


def _failing(monkeypatch, times: int) -> list[int]:
    """``RecordsTable.purge`` raises on its first ``times`` calls (a disk
    full, a LanceDB error), then works; returns the call counter."""
    from iai_mcp.store.records_table import RecordsTable

    calls, real = [], RecordsTable.purge

    def purge(self, seqs):
        calls.append(1)
        if len(calls) <= times:
            raise OSError("no space left on device")
        return real(self, seqs)

    monkeypatch.setattr(RecordsTable, "purge", purge)
    return calls


def test_a_purge_that_cannot_finish_is_not_lost_by_the_next_one(tmp_path, fake_embedder, monkeypatch):
    """The earlier purge still fails when the next one starts: its intent is
    merged into the new one, so after a reopen its record is gone too."""
    from iai_mcp.errors import StoreError

    root = tmp_path / "s"
    store = MemoryStore(path=root, embedder=fake_embedder)
    ids = fill(store, 6)
    found = needles(root, ids[0])
    _failing(monkeypatch, times=2)
    with pytest.raises(StoreError, match="could not finish"):
        store.purge([UUID(ids[0])])
    assert store.purge([UUID(ids[1])]) == [UUID(ids[1])]
    assert not (root / INTENT_FILE).exists()
    store.close()
    monkeypatch.undo()
    with MemoryStore(path=root) as reopened:
        assert reopened.get(ids[0]) is None and reopened.get(ids[1]) is None
        assert all(reopened.get(rid).literal_surface for rid in ids[2:])
    assert scan([root], found) == []


def test_a_purge_failing_for_good_stays_pending_with_the_new_one(tmp_path, fake_embedder, monkeypatch):
    from iai_mcp.errors import StoreError

    root = tmp_path / "s"
    store = MemoryStore(path=root, embedder=fake_embedder)
    ids = fill(store, 6)
    _failing(monkeypatch, times=99)
    for rid in ids[:2]:
        with pytest.raises(StoreError):
            store.purge([UUID(rid)])
    store.close()
    monkeypatch.undo()
    with MemoryStore(path=root) as reopened:  # the open finishes both
        assert reopened.get(ids[0]) is None and reopened.get(ids[1]) is None
        assert not (root / INTENT_FILE).exists() and len(reopened) == 4


def test_the_automatic_purge_finishes_a_pending_purge(tmp_path, fake_embedder, monkeypatch):
    """Purged slots are PURGED, not hidden: the next automatic run has nothing
    due, and still finishes what the failed one left."""
    from datetime import UTC, datetime, timedelta

    from iai_mcp.core import lifecycle
    from iai_mcp.errors import StoreError

    root = tmp_path / "s"
    store = MemoryStore(path=root, embedder=fake_embedder)
    ids = fill(store, 6)
    found = needles(root, ids[0])
    dispatch(store, "memory_forget", {"ids": ids[:1]})
    later = datetime.now(UTC) + timedelta(days=31)
    _failing(monkeypatch, times=1)
    with pytest.raises(StoreError):
        lifecycle.purge_expired(store, later)
    assert (root / INTENT_FILE).exists() and scan([root], found)
    assert lifecycle.purge_expired(store, later) == []
    assert not (root / INTENT_FILE).exists() and scan([root], found) == []
    store.close()


# ------------------------------------------- purging a memory that superseded others


def _api_text(store, include_hidden: bool = True) -> str:
    """Everything memory_get, memory_list(state=all) and export show."""
    import json

    listed = dispatch(store, "memory_list", {"state": "all", "limit": 500})["items"]
    exported = dispatch(store, "memory_export", {"include_hidden": include_hidden, "limit": 500})["records"]
    got = [dispatch(store, "memory_get", {"id": item["record_id"]}) for item in listed]
    return json.dumps([listed, exported, got], default=str)


def test_purging_the_replacement_makes_what_it_superseded_active_again(store):
    """A superseded by B, B by C; purging B: A is active again (history says
    its replacement was purged), C's history no longer names B, and no file
    or API result names B."""
    a = dispatch(store, "memory_capture", {"text": "billing runs on Postgres"})["record_id"]
    b = dispatch(store, "memory_capture", {"text": "billing runs on DynamoDB", "supersedes": [a]})["record_id"]
    c = dispatch(store, "memory_capture", {"text": "billing runs on Spanner", "supersedes": [b]})["record_id"]
    other = dispatch(store, "memory_capture", {"text": "unrelated note"})["record_id"]
    assert dispatch(store, "memory_get", {"id": a})["state"] == "superseded"
    assert b in _api_text(store)
    found = needles(store.root, b)

    dispatch(store, "memory_forget", {"ids": [b], "mode": "purge"})

    got = dispatch(store, "memory_get", {"id": a})
    assert got["state"] == "active" and got["superseded_by"] is None and got["valid_to"] is None
    assert got["history"][-1]["action"] == "restored" and "purged" in got["history"][-1]["detail"]
    assert dispatch(store, "memory_get", {"id": c})["state"] == "active"
    assert dispatch(store, "memory_get", {"id": other})["history"][-1]["action"] == "captured"
    text = _api_text(store)
    assert b not in text and UUID(b).hex not in text and a in text and c in text
    hits = dispatch(store, "memory_recall", {"cue": "billing runs on Postgres", "k": 10})
    assert a in {h["record_id"] for h in hits["hits"]}
    assert scan([store.root, config.overflow_dir()], found) == []
    store.close()
    with MemoryStore(path=store.root) as reopened:
        assert reopened.row(UUID(a)).state == "active" and b not in _api_text(reopened)


def test_purging_the_superseded_one_leaves_no_trace_in_its_replacement(store):
    a = dispatch(store, "memory_capture", {"text": "standup at 9"})["record_id"]
    b = dispatch(store, "memory_capture", {"text": "standup at 10", "supersedes": [a]})["record_id"]
    dispatch(store, "memory_forget", {"ids": [a], "mode": "purge"})
    assert dispatch(store, "memory_get", {"id": b})["state"] == "active"
    assert a not in _api_text(store)


def test_hiding_the_replacement_suspends_the_link_and_purging_it_names_it_nowhere(store):
    """While B (which replaced A) is hidden, A is the current fact; restoring B
    links them again; purging the hidden B leaves A active and B named nowhere."""
    a = dispatch(store, "memory_capture", {"text": "standup at 9"})["record_id"]
    b = dispatch(store, "memory_capture", {"text": "standup at 10", "supersedes": [a]})["record_id"]
    dispatch(store, "memory_forget", {"ids": [b]})
    shown = dispatch(store, "memory_get", {"id": a})
    assert (shown["state"], shown["superseded_by"]) == ("active", None)
    dispatch(store, "memory_restore", {"ids": [b]})
    assert dispatch(store, "memory_get", {"id": a})["superseded_by"] == b
    dispatch(store, "memory_forget", {"ids": [b]})
    found = needles(store.root, b)
    dispatch(store, "memory_forget", {"ids": [b], "mode": "purge"})
    assert dispatch(store, "memory_get", {"id": a})["state"] == "active"
    assert b not in _api_text(store) and scan([store.root, config.overflow_dir()], found) == []


def _replaced_fact(root, embedder):
    """A store where B superseded A, and the bytes by which B could be found."""
    store = MemoryStore(path=root, embedder=embedder)
    a = dispatch(store, "memory_capture", {"text": "billing runs on Postgres"})["record_id"]
    b = dispatch(store, "memory_capture", {"text": "billing runs on DynamoDB", "supersedes": [a]})["record_id"]
    return store, a, b, needles(root, b)


def _assert_relinked_after_reopen(root, embedder, a, b, found):
    """After the reopen finished the purge of B: A is active, B is nowhere."""
    with MemoryStore(path=root, embedder=embedder) as reopened:
        assert reopened.get(b) is None and reopened.row(UUID(a)).state == "active"
        assert b not in _api_text(reopened)
    assert scan([root], found) == []


def test_the_relink_is_finished_by_the_next_open(tmp_path, fake_embedder, monkeypatch):
    """The purge of B fails after its intent was written: the reopen both
    removes B and makes A active again."""
    from iai_mcp.errors import StoreError

    store, a, b, found = _replaced_fact(tmp_path / "s", fake_embedder)
    root = store.root
    _failing(monkeypatch, times=1)
    with pytest.raises(StoreError):
        store.purge([UUID(b)])
    store.close()
    monkeypatch.undo()
    _assert_relinked_after_reopen(root, fake_embedder, a, b, found)


def test_a_relink_that_failed_is_done_by_the_next_open(tmp_path, fake_embedder, monkeypatch):
    """The relink commit itself fails: B is gone from this process at once,
    and the reopen relinks A and removes B."""
    from iai_mcp.errors import StoreError
    from iai_mcp.store.records_table import RecordsTable

    store, a, b, found = _replaced_fact(tmp_path / "s", fake_embedder)
    root = store.root

    def replace(self, rows):
        raise OSError("no space left on device")

    monkeypatch.setattr(RecordsTable, "replace", replace)
    with pytest.raises(StoreError):
        store.purge([UUID(b)])
    assert store.get(b) is None and (root / INTENT_FILE).exists()
    store.close()
    monkeypatch.undo()
    _assert_relinked_after_reopen(root, fake_embedder, a, b, found)
