"""Recall's keyword index from a sealed snapshot (issue 14, cold start): a
fresh process loads it instead of tokenising every memory, with exactly the
results a rebuild gives, and never a stale, foreign or damaged one."""
from __future__ import annotations

import inspect
import json
import random
import shutil
import stat
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iai_mcp.core import dispatch, recall_snapshot
from iai_mcp.core.recall import RecallQuery, built_index, keyword_index, recall
from iai_mcp.embed import HashEmbedder
from iai_mcp.errors import CorruptData, InvalidInput, StoreError
from iai_mcp.retrieval import KeywordIndex, tokenize
from iai_mcp.retrieval.packed import pack, unpack
from iai_mcp.store import MemoryStore

CACHE = f"{recall_snapshot.NAME}.cache"
WORDS = ("garage door battery painting fence budget meeting deploy database migration coffee "
         "holiday flight passport dentist invoice keyboard guitar recipe marathon tomato").split()
NAMES = ("Caroline", "Melanie", "Dr Lee")
CUES = ["garage battery", "painting the fence", "budget meeting", "database migration deploy",
        "What did Caroline say about coffee?", "Melanie flight passport", "my recipe for tomato",
        "dentist invoice", "guitar marathon keyboard", "zanzibar"]


def _open(root, **options) -> MemoryStore:
    return MemoryStore(path=root, embedder=HashEmbedder(), **options)


def _capture(store, text, **extra) -> str:
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def _populate(store, count: int, seed: int) -> list[str]:
    """``count`` varied memories: sessions (some none), roles, projects,
    speaker labels and times, so every code the recall index derives varies."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(count):
        words = " ".join(rng.sample(WORDS, 5))
        text = f"{rng.choice(NAMES)}: {words} {seed}-{i}" if i % 3 == 0 else f"we talked about {words} ({seed}-{i})"
        extra = {"session_id": rng.choice(["s1", "s2", "s3", None]), "role": rng.choice(["user", "assistant", None]),
                 "project": rng.choice(["alpha", "beta", None]),
                 "ts": (start + timedelta(hours=rng.randrange(2000))).isoformat()}
        ids.append(_capture(store, text, **{k: v for k, v in extra.items() if v is not None}))
    return ids


def _results(store):
    """Every cue's hits and anti-hits, with exact float scores, and the keyword index's own arrays."""
    out = []
    for cue in CUES:
        for extra in ({}, {"include_superseded": True, "k": 30}, {"prefer_project": "beta", "k": 20}):
            found = recall(store, store.embedder, RecallQuery(cue=cue, **extra))
            out.append(([(h.row.id, h.score, h.reason) for h in found.hits],
                        [(h.row.id, h.score) for h in found.anti_hits], found.below_floor))
        index = keyword_index(store)
        out.append((index.scores(cue).tolist(), index.label_match(cue).tolist()))
    return out


def _events(capsys, name):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e.get("event") == name]


def _saved(root, count=30, seed=1) -> int:
    """A store at ``root`` with ``count`` memories and a snapshot of all of them."""
    with _open(root) as store:
        _populate(store, count, seed)
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
        return len(store)


def _rebuilt(root):
    """What a start without any snapshot recalls."""
    (root / CACHE).unlink(missing_ok=True)
    with _open(root) as store:
        results = _results(store)
        assert built_index(store).snapshot_rows == 0
    return results


# ------------------------------------------------------------- same results


def test_a_loaded_snapshot_recalls_exactly_what_a_rebuild_does(tmp_path, capsys):
    """Hidden, purged, restored and superseded rows, and rows captured after
    the snapshot: scores and ids identical to a rebuilt index, bit for bit."""
    root = tmp_path / "store"
    with _open(root) as store:
        ids = _populate(store, 60, seed=7)
        dispatch(store, "memory_forget", {"ids": ids[:4], "mode": "purge"})  # gone at the next open
        dispatch(store, "memory_forget", {"ids": ids[4:10]})
        _capture(store, "correction: the garage battery is in the blue drawer", supersedes=ids[10:13])
    with _open(root) as store:
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
        covered = len(store)
        dispatch(store, "memory_restore", {"ids": ids[4:6]})  # state changes after the snapshot
        later = _populate(store, 15, seed=8)  # rows after it
        dispatch(store, "memory_forget", {"ids": [*ids[20:22], later[0]]})
        _capture(store, "Melanie: the flight is on Tuesday now", supersedes=[later[1]])
    capsys.readouterr()
    with _open(root) as store:
        loaded = _results(store)
        assert built_index(store).snapshot_rows == covered
    assert [e["rows"] for e in _events(capsys, "recall_snapshot_loaded")] == [covered]
    assert loaded == _rebuilt(root)


def test_the_daemon_saves_after_warm_up_and_at_shutdown(tmp_path, monkeypatch, capsys):
    from tests.test_daemon import InThread, _client, _eventually

    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    root = tmp_path / "store"
    with _open(root) as store:
        _populate(store, 25, seed=3)
    with InThread(root), _client(root) as backend:
        assert _eventually(lambda: (root / CACHE).exists())
        backend.call("memory_capture", {"text": "a memory captured while the daemon runs"})
    saved = _events(capsys, "recall_snapshot_saved")
    assert [(e["reason"], e["rows"]) for e in saved] == [("warmup", 25), ("shutdown", 26)]
    with InThread(root), _client(root) as backend:  # the next start loads it, and has nothing new to save
        assert _eventually(lambda: backend.call("ping")["embedder_ready"])
        assert backend.call("memory_recall", {"cue": "captured while the daemon runs"})["hits"]
    err = capsys.readouterr().err
    assert '"event": "recall_snapshot_loaded"' in err and '"rows": 26' in err
    assert '"event": "recall_snapshot_saved"' not in err and '"event": "recall_snapshot_ignored"' not in err


def test_a_failing_save_is_one_line_and_the_daemon_serves_on(tmp_path, monkeypatch, capsys):
    from tests.test_daemon import InThread, _client, _eventually

    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)

    from iai_mcp.store import crypto

    def full_disk(self, parts, aad, out):
        out.write(b"x" * 100)  # some of it written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crypto.Cipher, "seal_stream", full_disk)
    root = tmp_path / "store"
    with _open(root) as store:
        _populate(store, 5, seed=4)
    with InThread(root), _client(root) as backend:
        assert _eventually(lambda: backend.call("ping")["embedder_ready"])
        assert backend.call("memory_recall", {"cue": "garage"})["hits"]
    failed = _events(capsys, "recall_snapshot_save_failed")
    assert [e["reason"] for e in failed] == ["warmup", "shutdown"]
    assert "No space left" in failed[0]["error"] and not (root / CACHE).exists()
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no temp file left either


# ------------------------------------------------------------ invalidation


def _falls_back(root, capsys, reason: str) -> None:
    capsys.readouterr()
    with _open(root) as store:
        keyword_index(store)
        assert built_index(store).snapshot_rows == 0
    ignored = _events(capsys, "recall_snapshot_ignored")
    assert [e["reason"] for e in ignored] == [reason]


def test_a_snapshot_of_other_texts_under_the_same_count_is_not_used(tmp_path, capsys):
    """Two copies of one store (a backup restored, say) that each went on:
    the same number of rows, the last one with other words."""
    first, second = tmp_path / "a", tmp_path / "b"
    with _open(first) as store:
        _populate(store, 20, seed=5)
    shutil.copytree(first, second)
    with _open(first) as store:
        _capture(store, "the passport is in the blue drawer")
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
    with _open(second) as store:
        _capture(store, "the tomato recipe needs basil")
    shutil.copy2(first / CACHE, second / CACHE)
    _falls_back(second, capsys, "stale")
    with _open(second) as store:
        scores = keyword_index(store).scores("basil")
        assert scores[len(store) - 1] > 0  # the second copy's own words, not the first's


def test_a_snapshot_from_before_a_purge_is_not_used(tmp_path, capsys):
    root = tmp_path / "store"
    _saved(root)
    before = (root / CACHE).read_bytes()
    with _open(root) as store:
        victim = store.rows()[3]
        dispatch(store, "memory_forget", {"ids": [str(victim.id)], "mode": "purge"})
        assert not (root / CACHE).exists()  # the purge deleted it: it held the victim's words
    (root / CACHE).write_bytes(before)  # as if it had survived (a backup put back)
    _falls_back(root, capsys, "stale")


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped", "other_store"])
def test_a_snapshot_that_does_not_open_is_not_used(tmp_path, capsys, damage):
    root = tmp_path / "store"
    _saved(root)
    blob = (root / CACHE).read_bytes()
    if damage == "truncated":
        blob = blob[: len(blob) // 2]
    elif damage == "bit_flipped":
        blob = blob[:100] + bytes([blob[100] ^ 0x01]) + blob[101:]
    else:  # the same memories in another store: another key
        other = tmp_path / "other"
        _saved(other)
        blob = (other / CACHE).read_bytes()
    (root / CACHE).write_bytes(blob)
    _falls_back(root, capsys, "unreadable")


def test_a_snapshot_of_another_format_is_not_used_and_is_replaced(tmp_path, capsys, monkeypatch):
    root = tmp_path / "store"
    _saved(root)
    monkeypatch.setattr(recall_snapshot, "FORMAT", recall_snapshot.FORMAT + 1)
    _falls_back(root, capsys, "version")
    with _open(root) as store:  # overwritten by the next save, then used
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
    with _open(root) as store:
        keyword_index(store)
        assert built_index(store).snapshot_rows == 30


def test_a_snapshot_from_another_tokenizer_is_not_used(tmp_path, capsys, monkeypatch):
    root = tmp_path / "store"
    _saved(root)
    monkeypatch.setattr(recall_snapshot, "tokenizer_mark", lambda: "another-stemmer")
    _falls_back(root, capsys, "version")


def test_sealed_bytes_that_are_not_a_snapshot_are_not_used(tmp_path, capsys):
    root = tmp_path / "store"
    _saved(root)
    with _open(root) as store:
        meta, arrays = unpack(store.read_cache(recall_snapshot.NAME))
        arrays["docs"] = arrays["docs"][:-1]  # one posting short: the parts no longer fit
        assert store.write_cache(recall_snapshot.NAME, pack(meta, arrays))
    _falls_back(root, capsys, "malformed")


# ----------------------------------------------------- on disk, and who writes


def test_the_snapshot_is_owner_only_and_holds_no_word_in_clear(tmp_path):
    root = tmp_path / "store"
    with _open(root) as store:
        _capture(store, "Zanzibarquokka: the wifi password is purplemonkeydishwasher",
                 session_id="sessionsecretxyz", project="projectsecretxyz")
        _populate(store, 10, seed=9)
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
    assert stat.S_IMODE((root / CACHE).stat().st_mode) == 0o600
    data = (root / CACHE).read_bytes().lower()
    for word in ["zanzibarquokka", "purplemonkeydishwash", "password", "sessionsecretxyz", "projectsecretxyz",
                 "garage", "painting", "paint", "caroline", *tokenize("wifi password")]:
        assert word.encode() not in data, word
    assert b"IAIPACK" not in data and b"terms" not in data
    assert not list(root.glob(".*.tmp"))


def test_a_read_only_store_reads_a_snapshot_and_never_writes_one(tmp_path):
    root = tmp_path / "store"
    covered = _saved(root)
    with _open(root, read_only=True) as store:
        keyword_index(store)
        assert built_index(store).snapshot_rows == covered
    (root / CACHE).unlink()
    with _open(root, read_only=True) as store:
        keyword_index(store)
        assert not recall_snapshot.save(store, reason="test")
        assert not store.write_cache(recall_snapshot.NAME, b"anything")
    assert not (root / CACHE).exists()


def test_no_snapshot_is_written_once_a_purge_ran_in_the_process(tmp_path, capsys):
    root = tmp_path / "store"
    _saved(root)
    with _open(root) as store:
        keyword_index(store)
        _populate(store, 3, seed=2)
        dispatch(store, "memory_forget", {"ids": [str(store.rows()[0].id)], "mode": "purge"})
        keyword_index(store)
        assert not recall_snapshot.save(store, reason="test")
        assert not store.write_cache("other", b"derived before the purge")
    assert not list(root.glob("*.cache"))
    assert [e["why"] for e in _events(capsys, "recall_snapshot_not_saved")] == ["a purge ran in this process"]


def test_save_only_writes_when_enough_rows_are_new(tmp_path):
    root = tmp_path / "store"
    with _open(root) as store:
        assert not recall_snapshot.save(store, reason="test")  # nothing built: nothing to save
        _populate(store, 5, seed=6)
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
        assert not recall_snapshot.save(store, reason="test")  # nothing new
        _populate(store, 2, seed=7)
        keyword_index(store)
        assert not recall_snapshot.save(store, reason="test", min_new=3)
        assert recall_snapshot.save(store, reason="test", min_new=2)


# ------------------------------------------------------------ the parts


def test_store_caches_are_named_sealed_and_bound_to_their_name(tmp_path):
    with _open(tmp_path / "store") as store:
        assert store.read_cache("some-cache") is None
        assert store.write_cache("some-cache", b"derived bytes")
        assert store.read_cache("some-cache") == b"derived bytes"
        for bad in ("../key", "Upper", "", "a/b", "x" * 80):
            with pytest.raises(InvalidInput):
                store.write_cache(bad, b"x")
        (store.root / "other-cache.cache").write_bytes((store.root / "some-cache.cache").read_bytes())
        with pytest.raises(CorruptData):
            store.read_cache("other-cache")  # sealed for another name


def test_keyword_index_export_and_restore_round_trip():
    index = KeywordIndex()
    texts = ["Caroline: red apple pie", "green apple tart", "", "東京 apple", "Melanie: blue sky " * 3]
    for doc, text in enumerate(texts):
        index.add(doc, text)
    index.remove(1)
    meta, arrays = index.export()
    meta, arrays = unpack(pack(meta, arrays))
    copy = KeywordIndex.restored(json.loads(json.dumps(meta)), arrays)
    for cue in ("apple", "Caroline apple", "sky", "東京", "nothing"):
        assert np.array_equal(copy.scores(cue), index.scores(cue))
        assert np.array_equal(copy.label_match(cue), index.label_match(cue))
    for either in (index, copy):
        either.add(5, "apple crumble")
        either.restore(1)
    assert np.array_equal(copy.scores("apple"), index.scores("apple"))


def test_unpack_refuses_what_pack_did_not_make():
    good = pack({"a": 1}, {"x": np.arange(5, dtype=np.int32)})
    assert unpack(good)[1]["x"].tolist() == [0, 1, 2, 3, 4]
    for bad in (b"", b"NOTPACK1" + good[8:], good[:20], good[:-4]):
        with pytest.raises(ValueError):
            unpack(bad)
    with pytest.raises(ValueError):
        pack({}, {"objects": np.array([object()])})


def test_the_keeper_saves_as_rows_arrive_and_never_after_close(tmp_path, monkeypatch):
    import threading

    from tests.test_daemon import _eventually

    monkeypatch.setattr(recall_snapshot, "RESAVE_ROWS", 3)
    root = tmp_path / "store"
    with _open(root) as store:
        _populate(store, 4, seed=1)
        keyword_index(store)
        lock, stop = threading.Lock(), threading.Event()
        keeper = recall_snapshot.Keeper(store, lock)
        assert keeper.save("warmup")
        thread = threading.Thread(target=keeper.run, args=(stop, 0.01))
        thread.start()
        try:
            with lock:  # as the daemon's requests do
                _populate(store, 2, seed=2)
            assert not _eventually(lambda: built_index(store).snapshot_rows != 4, timeout=0.3)  # 2 < 3 new rows
            with lock:
                _populate(store, 1, seed=3)
            assert _eventually(lambda: built_index(store).snapshot_rows == 7)
            with lock:
                keeper.close(last_save=False)
                _populate(store, 5, seed=4)
            assert not keeper.save("late") and not _eventually(
                lambda: built_index(store).snapshot_rows != 7, timeout=0.3)
        finally:
            stop.set()
            thread.join(5)
    with _open(root) as store:
        keyword_index(store)
        assert built_index(store).snapshot_rows == 7


_WORD = st.sampled_from(["apple", "apples", "painting", "paint", "the", "東京", "caroline", "sky", "x1", "ruby"])


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.lists(_WORD, max_size=12).map(" ".join), max_size=25),
       labels=st.lists(st.booleans(), max_size=25), removed=st.sets(st.integers(0, 24)),
       cues=st.lists(st.lists(_WORD, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=4))
def test_any_keyword_index_survives_the_round_trip(texts, labels, removed, cues):
    index = KeywordIndex()
    for doc, text in enumerate(texts):
        index.add(doc, f"Caroline: {text}" if doc < len(labels) and labels[doc] else text)
    for doc in removed & set(range(len(texts))):
        index.remove(doc)
    copy = KeywordIndex.restored(*unpack(pack(*index.export())))
    assert len(copy) == len(index) and copy.live == index.live
    for cue in cues:
        assert np.array_equal(copy.scores(cue), index.scores(cue))
        assert np.array_equal(copy.label_match(cue), index.label_match(cue))


def test_a_purge_that_cannot_delete_the_caches_removes_nothing(tmp_path, monkeypatch):
    from iai_mcp.errors import StoreError
    from iai_mcp.store.sealed_cache import SealedCache

    root = tmp_path / "store"
    _saved(root, count=5)

    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(SealedCache, "drop_all", refused)
    with _open(root) as store:
        victim = store.rows()[2].id
        with pytest.raises(StoreError, match="caches"):
            store.purge([victim])
        assert store.row(victim) is not None and len(store) == 5
    assert (root / CACHE).exists()


@pytest.mark.parametrize("change", ["bm25_b", "stopwords"])
def test_a_snapshot_from_a_release_that_scores_or_tokenises_otherwise_is_not_used(tmp_path, capsys, monkeypatch,
                                                                                   change):
    """A snapshot carries its own k1 and b, and terms made by the tokeniser of
    its day: a release that re-tunes b, or adds a stopword the fingerprint's
    probe never meets, must rebuild, not keep the old index for good."""
    from iai_mcp.retrieval import keyword_index as keyword_module
    from iai_mcp.retrieval import text

    root = tmp_path / "store"
    _saved(root)
    recall_snapshot.tokenizer_mark.cache_clear()
    if change == "bm25_b":
        defaults = keyword_module.KeywordIndex.__init__.__defaults__
        monkeypatch.setattr(keyword_module.KeywordIndex.__init__, "__defaults__", (defaults[0], defaults[1] + 0.1))
    else:
        source = inspect.getsource(text) + "\n# talked is a stopword now\n"
        monkeypatch.setattr(recall_snapshot.inspect, "getsource", lambda module: source)
    try:
        _falls_back(root, capsys, "version")
    finally:
        recall_snapshot.tokenizer_mark.cache_clear()


def test_a_purge_removes_what_a_cut_short_save_left(tmp_path):
    """A save killed mid-write leaves its temp file, sealed but full of the
    store's words: a purge must not leave it behind."""
    from iai_mcp.fs import temp_path

    root = tmp_path / "store"
    _saved(root)
    stray = temp_path(root / CACHE)
    stray.write_bytes((root / CACHE).read_bytes())
    unrelated = temp_path(root / "meta.json")
    unrelated.write_bytes(b"{}")
    with _open(root) as store:
        dispatch(store, "memory_forget", {"ids": [str(store.rows()[0].id)], "mode": "purge"})
    assert not stray.exists() and not (root / CACHE).exists()
    assert unrelated.exists()  # another file's leftovers are repair's to judge


def test_no_snapshot_is_written_while_a_purge_is_unfinished(tmp_path):
    """A purge recorded on disk but not carried out (its records still in
    memory, so in any index derived here) must not end up in a snapshot."""
    from iai_mcp.store.purge import Intent

    root = tmp_path / "store"
    _saved(root, count=8)
    with _open(root) as store:
        victim = store.rows()[2]
        store._purger.begin(Intent((str(victim.id),), (int(store.seqs()[2]),)))
        keyword_index(store)
        assert store.write_cache(recall_snapshot.NAME, b"anything") is False
        assert not recall_snapshot.save(store, reason="test")


# ------------------------------------------------------- streamed sealing


def test_a_streamed_seal_is_the_one_shot_seal_byte_for_byte(monkeypatch):
    """``seal_stream`` writes what ``seal`` returns for the same nonce (so
    ``open`` reads it), whatever the parts and however they straddle chunks."""
    import io
    import os as _os

    from iai_mcp.store import crypto

    monkeypatch.setattr(crypto, "STREAM_CHUNK", 1000)
    cipher = crypto.Cipher(bytes(range(32)))
    parts = [b"", b"head", memoryview(bytes(range(256)) * 9).cast("B"), bytearray(b"x" * 2500), b"tail"]
    nonce = b"\x07" * crypto.NONCE_BYTES
    monkeypatch.setattr(crypto.os, "urandom", lambda n: nonce[:n])
    out = io.BytesIO()
    written = cipher.seal_stream(parts, b"aad", out)
    joined = b"".join(bytes(p) for p in parts)
    assert out.getvalue() == cipher.seal(joined, b"aad") and written == len(out.getvalue())
    monkeypatch.setattr(crypto.os, "urandom", _os.urandom)
    assert cipher.open(out.getvalue(), b"aad") == joined


def test_a_snapshot_save_holds_no_joined_or_sealed_copy(tmp_path, monkeypatch):
    """The save streams the packed parts into the cipher: the joined bytes
    (``pack``) are never built, nothing is sealed in one piece, the parts
    reach the cipher one by one, and what lands on disk loads."""
    from iai_mcp.retrieval import packed
    from iai_mcp.store import crypto

    root = tmp_path / "store"
    with _open(root) as store:
        _populate(store, 30, 1)

    def joined(*args):
        pytest.fail("the snapshot was joined or sealed in one piece")

    real, given = crypto.Cipher.seal_stream, []

    def counted(self, parts, aad, out):
        def each():
            for part in parts:
                given.append(len(memoryview(part).cast("B")))
                yield part
        return real(self, each(), aad, out)

    monkeypatch.setattr(packed, "pack", joined)
    monkeypatch.setattr(recall_snapshot, "pack", joined, raising=False)  # however it is imported
    monkeypatch.setattr(crypto.Cipher, "seal_stream", counted)
    monkeypatch.setattr(crypto.Cipher, "seal", joined)
    with _open(root) as store:
        keyword_index(store)
        assert recall_snapshot.save(store, reason="test")
    assert len(given) >= 9  # magic, length, header, then each array (and padding) as its own part
    monkeypatch.undo()
    with _open(root) as store:
        meta, arrays = packed.unpack(store.read_cache(recall_snapshot.NAME))
    assert meta["rows"] == 30 and len(arrays["length"]) == 30


def test_a_purge_while_a_cache_is_sealed_keeps_it_out(tmp_path):
    """A purge that runs while the sealed bytes stream to their temp file:
    the temp file is deleted and nothing is put in place."""
    root = tmp_path / "store"
    with _open(root) as store:
        ids = _populate(store, 6, seed=3)

        def parts():
            yield b"derived from every record, the purged one too"
            dispatch(store, "memory_forget", {"ids": ids[:1], "mode": "purge"})
            yield b" and more"

        assert store.write_cache_parts("some-cache", parts()) is False
    assert not (root / "some-cache.cache").exists()
    assert not [p.name for p in root.iterdir() if p.name.startswith(".some-cache")]


def test_an_open_removes_what_a_killed_cache_write_left(tmp_path):
    from iai_mcp.fs import temp_path

    root = tmp_path / "store"
    _saved(root)
    stray = temp_path(root / CACHE)
    stray.write_bytes((root / CACHE).read_bytes())
    with _open(root):
        assert not stray.exists() and (root / CACHE).exists()


def test_an_export_written_while_documents_are_added_holds_what_it_counted():
    """The snapshot's postings are read term by term as they are sealed,
    outside the store lock: documents added meanwhile (to old terms and new)
    must not reach it, and it must equal an index of the first ones alone."""
    texts = ["Caroline: red apple pie", "green apple tart", "東京 apple", "blue sky " * 3, "apple apple jam"]
    later = ["apple and a brand new word", "sky jam tart", "Melanie: red apple"]
    index, alone = KeywordIndex(), KeywordIndex()
    for doc, text in enumerate(texts):
        index.add(doc, text)
        alone.add(doc, text)
    index.remove(1)
    alone.remove(1)
    meta, arrays = index.export()
    for doc, text in enumerate(later, start=len(texts)):
        index.add(doc, text)  # meanwhile, before a byte is written
    copy = KeywordIndex.restored(*unpack(pack(meta, arrays)))
    assert len(copy) == len(texts)
    for cue in ("apple", "Caroline apple", "sky jam", "brand new", "東京"):
        assert np.array_equal(copy.scores(cue), alone.scores(cue))


def test_an_export_read_between_its_pieces_while_documents_arrive_holds_what_it_counted(monkeypatch):
    """Documents (new terms and old) added while the export's pieces are
    being read, between one piece and the next, as a capture can outside
    the store lock: the packed index is still the one the export counted."""
    from iai_mcp.retrieval import keyword_index as ki

    monkeypatch.setattr(ki, "EXPORT_CHUNK", 8)  # a piece every term or two
    index, alone = KeywordIndex(), KeywordIndex()
    texts = [f"apple pie number {i} with word{i % 5} Caroline: notes" for i in range(40)]
    for doc, text in enumerate(texts):
        index.add(doc, text)
        alone.add(doc, text)
    meta, arrays = index.export()
    pieces = arrays["docs"].pieces
    added = []

    def interleaved():
        for piece in pieces:
            yield piece
            doc = len(texts) + len(added)
            index.add(doc, f"apple word{doc % 5} brandnew{doc} pie")  # old terms and a new one
            added.append(doc)

    arrays["docs"] = packed_pieces(arrays["docs"], interleaved())
    copy = KeywordIndex.restored(*unpack(pack(meta, arrays)))
    assert len(added) > 5 and len(copy) == len(texts)
    for cue in ("apple", "word3 pie", "brandnew45", "Caroline notes"):
        assert np.array_equal(copy.scores(cue), alone.scores(cue))


def packed_pieces(pieces, iterable):
    from dataclasses import replace

    return replace(pieces, pieces=iterable)


def test_pieces_that_are_not_as_long_as_they_said_fail_the_pack():
    from iai_mcp.retrieval.packed import Pieces

    short = Pieces("<i4", 3, [np.arange(2, dtype="<i4").tobytes()])
    with pytest.raises(ValueError, match="pieces gave 8 bytes for an array of 12"):
        pack({}, {"a": short})


def test_the_posting_cache_stays_within_its_budget_and_scores_do_not_change(monkeypatch):
    from iai_mcp.retrieval import keyword_index as ki

    monkeypatch.setattr(ki, "CACHE_BYTES", 400)  # a few terms' worth
    index = KeywordIndex()
    words = [f"w{i}" for i in range(60)]
    for doc in range(40):
        index.add(doc, " ".join(words[doc % 7 * 5:doc % 7 * 5 + 12]))
    fresh = KeywordIndex.restored(*unpack(pack(*index.export())))
    for round_ in range(3):
        for cue in words[::3]:
            assert np.array_equal(index.scores(cue), fresh.scores(cue))
            held = sum(a.nbytes + b.nbytes for a, b in index._cache.values())
            assert held == index._cache_bytes <= 400
    index.add(40, "w0 w1 w2")  # a posting grew: its cached arrays are made again
    assert index.scores("w0")[40] > 0


def test_a_cache_staged_after_the_purges_first_sweep_is_deleted_by_the_purge(tmp_path, monkeypatch):
    """A save that passed its purge check and stages its file after the
    purge's ``drop_all``, while the purge runs: the purge's second sweep
    (under the staging lock) deletes it, and it is never put in place."""
    import threading

    from iai_mcp.store import sealed_cache

    root = tmp_path / "store"
    with _open(root) as store:
        ids = _populate(store, 6, seed=3)
        keyword_index(store)
        staged, release = threading.Event(), threading.Event()
        real_drop_all = sealed_cache.SealedCache.drop_all

        def drop_all_then_let_a_save_stage(self):
            dropped = real_drop_all(self)
            saver.start()
            staged.wait(5)  # the save's temp file exists now, after this sweep
            return dropped

        def parts():
            yield b"derived from every record, the purged one too"
            staged.set()
            release.wait(5)
            yield b" and more"

        result, checks, looked = [], [], threading.Event()
        real_check = store._purged_here

        def purged_here():
            checks.append(1)
            if len(checks) == 2:  # the save's check under the store lock: after the purge returned
                looked.wait(5)
            return real_check()

        monkeypatch.setattr(store, "_purged_here", purged_here)
        saver = threading.Thread(target=lambda: result.append(store.write_cache_parts("some-cache", parts())))
        monkeypatch.setattr(sealed_cache.SealedCache, "drop_all", drop_all_then_let_a_save_stage)
        purge = threading.Thread(target=lambda: dispatch(store, "memory_forget", {"ids": ids[:1], "mode": "purge"}))
        purge.start()
        assert staged.wait(5)
        release.set()  # the save finishes writing; the purge's second sweep then takes the staging lock
        purge.join(10)
        # The purge has returned: no file may hold the purged words, not even for a moment.
        assert not [p.name for p in root.iterdir() if p.name.startswith(".some-cache")]
        looked.set()
        saver.join(10)
        assert result == [False]
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".some-cache") or p.name == "some-cache.cache"]
    assert leftovers == []


def test_a_stray_that_cannot_be_deleted_does_not_stop_the_open(tmp_path, caplog):
    root = tmp_path / "store"
    _saved(root)
    stuck = root / ".recall-snapshot.cache.123-abcd.tmp"
    stuck.mkdir()  # unlink fails on it
    with _open(root) as store:
        assert len(store) == 30
    assert stuck.exists()
    assert [r.fields["file"] for r in caplog.records if r.getMessage() == "cache_temp_not_deleted"] == [stuck.name]


def test_a_stray_that_cannot_be_deleted_refuses_a_purge_by_name(tmp_path):
    """It may hold the store's words (sealed): a purge must not pretend to
    have removed them, and says which file stands in its way."""
    root = tmp_path / "store"
    _saved(root)
    stuck = root / ".recall-snapshot.cache.123-abcd.tmp"
    stuck.mkdir()
    with _open(root) as store:
        victim = str(store.rows()[0].id)
        with pytest.raises(StoreError, match=r"recall-snapshot\.cache\.123-abcd\.tmp cannot be deleted"):
            dispatch(store, "memory_forget", {"ids": [victim], "mode": "purge"})
        assert store.row(store.rows()[0].id) is not None  # nothing purged


def test_a_cache_staged_during_a_purge_that_cannot_be_swept_is_logged_and_the_purge_completes(
        tmp_path, monkeypatch, caplog):
    """The purge's second sweep (after its records are marked) is logged
    when a file resists, and the purge still completes: failing there would
    report "nothing happened" for a purge already under way."""
    from uuid import UUID

    from iai_mcp.store import sealed_cache

    root = tmp_path / "store"
    real_unlink, real_drop_all, resisting = sealed_cache.Path.unlink, sealed_cache.SealedCache.drop_all, []

    def unlink(self, missing_ok=False):
        if resisting and self.name.startswith(".some-cache"):
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, missing_ok=missing_ok)

    def drop_all_then_resist(self):
        dropped = real_drop_all(self)
        resisting.append(1)  # from the second sweep on
        return dropped

    with _open(root) as store:
        ids = _populate(store, 6, seed=5)

        def parts():
            yield b"derived"
            with monkeypatch.context() as patch:
                patch.setattr(sealed_cache.Path, "unlink", unlink)
                patch.setattr(sealed_cache.SealedCache, "drop_all", drop_all_then_resist)
                assert dispatch(store, "memory_forget", {"ids": ids[:1], "mode": "purge"})
            yield b" more"

        assert store.write_cache_parts("some-cache", parts()) is False
        assert store.row(UUID(ids[0])) is None  # purged
    logged = [r.fields["file"] for r in caplog.records if r.getMessage() == "cache_temp_not_deleted"]
    assert len(logged) == 1 and logged[0].startswith(".some-cache")
