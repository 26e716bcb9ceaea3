"""The sealed exact vectors' file (``store.sealed_vectors``), from the
review of the int8 vector codes (issue 14): short writes, a full disk, a
purge's erase, reads beside a close, and a failed open."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from iai_mcp.core.recall import RecallQuery, rank
from iai_mcp.errors import CorruptData, EmbedderMismatch, StoreError
from iai_mcp.store import MemoryStore, sealed_vectors
from iai_mcp.store.sealed_vectors import BLOB_BYTES
from iai_mcp.types import EMBED_DIM
from tests.test_vector_index import _check_aligned, _fill

_REAL_PWRITE = os.pwrite


def _vectors(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, EMBED_DIM)).astype(np.float32)


def _expected(records: list) -> dict:
    return {r.id: np.asarray(r.embedding, dtype=np.float32) for r in records}


def _everything_works(store: MemoryStore, records: list) -> None:
    """get, recall, update and purge of every one of ``records`` (the last is purged)."""
    for r in records:
        assert store.get(r.id).embedding == pytest.approx(r.embedding, abs=0)
        rank(store, None, RecallQuery(cue="memory", cue_embedding=r.embedding, k=5, min_score=-1.0))
        store.update(r.id, tags=["checked"])
    store.purge([records[-1].id])
    assert store.row(records[-1].id) is None


def test_a_short_write_is_written_again_until_every_byte_is_in(store, monkeypatch):
    """The finding: ``pwrite``'s count was never checked. A disk may write
    part of a block and return a short count: the rest must follow."""
    def at_most_1000(fd, data, offset):
        return _REAL_PWRITE(fd, data[:1000], offset)

    first = _fill(store, _vectors(0, 10))
    monkeypatch.setattr(sealed_vectors.os, "pwrite", at_most_1000)
    later = _fill(store, _vectors(1, 10))
    assert store._slots.sealed._memory is None  # still in the file: nothing failed
    _check_aligned(store, _expected([*first, *later]))
    _everything_works(store, later)


def test_a_disk_that_fills_mid_write_loses_no_vector(store, monkeypatch, capfd):
    """A short count, then ENOSPC (what ``write(2)`` does as the disk fills):
    the blobs move to memory built from the blobs in hand and the ones
    written in full, never from the torn file; get, recall, update and purge
    of the records written then all work."""
    first = _fill(store, _vectors(0, 30))
    calls = {"n": 0}

    def filling(fd, data, offset):
        calls["n"] += 1
        if calls["n"] == 1:
            return _REAL_PWRITE(fd, data[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sealed_vectors.os, "pwrite", filling)
    torn = _fill(store, _vectors(1, 1))
    after = _fill(store, _vectors(2, 1))
    monkeypatch.setattr(sealed_vectors.os, "pwrite", _REAL_PWRITE)
    assert "sealed_vectors_in_memory" in capfd.readouterr().err
    _check_aligned(store, _expected([*first, *torn, *after]))
    _everything_works(store, [*torn, *after])
    assert not (store.root / "purge.pending").exists()


def test_a_write_that_makes_no_progress_moves_the_vectors_to_memory(store, monkeypatch, capfd):
    first = _fill(store, _vectors(0, 5))
    monkeypatch.setattr(sealed_vectors.os, "pwrite", lambda fd, data, offset: 0)
    later = _fill(store, _vectors(1, 5))
    assert "sealed_vectors_in_memory" in capfd.readouterr().err
    _check_aligned(store, _expected([*first, *later]))


def test_a_purge_that_cannot_read_its_vectors_changes_nothing(tmp_path, fake_embedder):
    """The exact vectors are read before the purge is recorded: an
    unreadable one is a StoreError saying what to do, and nothing is
    removed (before, CorruptData escaped after ``purge.pending`` was
    written, and the next open finished the purge)."""
    path = tmp_path / "store"
    store = MemoryStore(path=path, embedder=fake_embedder)
    records = _fill(store, _vectors(0, 5))
    sealed, where = store._slots.sealed, int(store._slots.where[store._slots.index_of[records[2].id]])
    _REAL_PWRITE(sealed._file.fileno(), b"\x01" * BLOB_BYTES, where * BLOB_BYTES)  # the blob, damaged
    with pytest.raises(StoreError) as caught:
        store.purge([records[1].id, records[2].id])
    assert not isinstance(caught.value, CorruptData) and "nothing was removed" in str(caught.value)
    assert not (path / "purge.pending").exists()
    assert store.row(records[1].id) is not None and store.row(records[2].id) is not None
    store.close()
    store = MemoryStore(path=path, embedder=fake_embedder)  # the open rebuilds the file from the table
    try:
        assert len(store) == 5
        _check_aligned(store, _expected(records))
        store.purge([records[2].id])
        assert store.row(records[2].id) is None
    finally:
        store.close()


def _fd_target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def test_a_purge_erases_the_sealed_blob_in_the_file_and_in_memory(store, monkeypatch):
    records = _fill(store, _vectors(0, 10))
    slots, sealed = store._slots, store._slots.sealed
    where = {r.id: int(slots.where[slots.index_of[r.id]]) for r in records}
    zeros = bytes(BLOB_BYTES)
    store.purge([records[0].id])
    assert sealed.read(where[records[0].id]) == zeros
    assert os.pread(sealed._file.fileno(), BLOB_BYTES, where[records[0].id] * BLOB_BYTES) == zeros
    assert sealed.read(where[records[1].id]) != zeros

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sealed_vectors.os, "pwrite", full)
    store.purge([records[1].id])  # the erase moves the blobs to memory
    assert sealed._memory is not None and sealed._file is None
    for gone in records[:2]:
        assert sealed.read(where[gone.id]) == zeros
    assert sealed.read(where[records[2].id]) != zeros
    store.purge([records[2].id])  # erased in memory
    assert sealed.read(where[records[2].id]) == zeros
    _check_aligned(store, _expected(records[3:]))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_close_closes_the_sealed_vectors_file(store):
    _fill(store, _vectors(0, 3))
    sealed = store._slots.sealed
    fd = sealed._file.fileno()
    held = _fd_target(fd)
    assert held is not None and "(deleted)" in held
    store.close()
    assert sealed._file is None and _fd_target(fd) != held
    with pytest.raises(StoreError):
        sealed.read(0)


def test_a_read_is_never_cut_by_a_close(store, monkeypatch):
    """A close (or a move to memory) that lands while a read is at the file
    waits for it: before, it closed the file under the read (EBADF, or a
    reused descriptor's bytes)."""
    _fill(store, _vectors(0, 3))
    sealed = store._slots.sealed
    position = int(store._slots.where[0])
    want = sealed.read(position)
    real_pread = os.pread
    started, closer = threading.Event(), None

    def close_meanwhile(fd, size, offset):
        nonlocal closer
        if closer is None:
            def close() -> None:
                started.set()
                sealed.close()

            closer = threading.Thread(target=close)
            closer.start()
            started.wait(10)
            closer.join(0.5)  # lets an unguarded close happen; a guarded one waits for this read
        return real_pread(fd, size, offset)

    monkeypatch.setattr(sealed_vectors.os, "pread", close_meanwhile)
    try:
        assert sealed.read(position) == want
    finally:
        if closer is not None:
            closer.join(10)
    assert not closer.is_alive() and sealed._file is None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_failed_open_closes_the_sealed_vectors_file(tmp_path, fake_embedder):
    """An open that fails after the vectors were read (here: another
    embedder) leaves no nameless file open (156 MB at 100k records)."""
    path = tmp_path / "store"
    with MemoryStore(path=path, embedder=fake_embedder) as store:
        _fill(store, _vectors(0, 5))

    class Other:
        name, dim = "another-model", EMBED_DIM

    def held_files() -> list[str]:
        links = [_fd_target(int(fd)) for fd in os.listdir("/proc/self/fd")]
        return [link for link in links if link and link.startswith(str(path)) and "(deleted)" in link]

    assert held_files() == []
    with pytest.raises(EmbedderMismatch) as caught:
        MemoryStore(path=path, embedder=Other())
    assert held_files() == []
    assert caught.value  # the traceback (and the half-opened store) still alive here
