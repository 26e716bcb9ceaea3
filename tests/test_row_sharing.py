"""Rows in memory share equal values (issue 14, footprint): fewer bytes per
record, the same values, and no change made to one row reaches another."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from bench.row_footprint import row_bytes
from iai_mcp.core import dispatch
from iai_mcp.store import MemoryStore
from iai_mcp.store.codec import encode_row
from iai_mcp.types import EMBED_DIM, MemoryRecord

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def _record(i: int, **fields) -> MemoryRecord:
    """A record shaped like a batch capture: one instant, a few sessions and tags."""
    at = T0 + timedelta(seconds=i // 100)
    session = f"session-{i % 20}"
    values = {
        "id": uuid4(), "tier": "episodic", "literal_surface": f"memory number {i} about the search API",
        "aaak_index": "", "embedding": [0.1 + (i % 7) / 10] * EMBED_DIM, "community_id": None,
        "centrality": 0.0, "detail_level": 2, "pinned": False, "stability": 0.0, "difficulty": 0.0,
        "last_reviewed": None, "never_decay": False, "never_merge": False, "provenance": [],
        "created_at": at, "updated_at": at, "language": "en", "tags": [f"topic-{i % 5}"],
        "session_id": session, "role": ("user", "assistant")[i % 2], "event_time": T0 + timedelta(minutes=i),
        "history": [{"ts": T0.isoformat(), "action": "captured", "session_id": session, "detail": None}],
        "project": "/work/app",
    }
    values.update(fields)
    return MemoryRecord(**values)


def _reopen(store: MemoryStore, fake_embedder) -> MemoryStore:
    root = store.root
    store.close()
    return MemoryStore(path=root, embedder=fake_embedder)


def _exact(value):
    """A value with its type and, for datetimes and floats, what equality ignores."""
    if isinstance(value, datetime):
        return value.isoformat(), value.tzname(), value.fold
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return [_exact(item) for item in value]
    return type(value).__name__, value


def test_reopened_rows_hold_about_half_the_bytes(store, fake_embedder):
    # Before: every decoded row owned its tier, language, role, session id,
    # tag list, history keys and time, floats and datetimes.
    store.insert_many([_record(i) for i in range(2000)])
    store = _reopen(store, fake_embedder)
    try:
        sizes = row_bytes(store.rows())
        per_record = sum(sizes.values()) / len(store)
        assert per_record < 900, (per_record, sizes)  # measured: 1,725 B before, 741 B after
        for name in ("tier", "language", "role", "session_id", "project", "tags", "centrality", "updated_at"):
            assert sizes[name] < 2000 * 8, (name, sizes[name])  # a few shared objects, not one a row
    finally:
        store.close()


def test_shared_fields_compare_and_serialise_as_before(store, fake_embedder):
    records = [_record(i) for i in range(300)]
    expected = {r.id: (dataclasses.replace(r), encode_row(r)) for r in records}
    store.insert_many(records)
    for current in (store, _reopen(store, fake_embedder)):
        rows = current.rows()
        assert rows[0].tier is rows[1].tier and rows[0].tags is rows[5].tags  # shared...
        assert rows[0].created_at is rows[0].updated_at
        for row in rows:
            original, payload = expected[row.id]
            assert encode_row(row) == payload  # ...yet sealed byte for byte as before
            for name in (f.name for f in dataclasses.fields(row)):
                assert _exact(getattr(row, name)) == _exact(getattr(original, name)), name
            assert row.tags == original.tags and isinstance(row.tags, list)
            assert json.dumps(row.history) == json.dumps(original.history)
            assert dataclasses.asdict(row)["tags"] == original.tags
        got = dispatch(current, "memory_get", {"id": str(rows[3].id)})
        assert got["tags"] == ["topic-3"] and got["session_id"] == "session-3"
    current.close()


def test_equal_but_distinguishable_values_are_never_swapped(store):
    # -0.0 == 0.0, and 13:00+01:00 == 12:00+00:00: equal, but not the same value.
    plus_one = timezone(timedelta(hours=1))
    first = _record(0, centrality=0.0, event_time=T0)
    second = _record(1, centrality=-0.0, event_time=T0.astimezone(plus_one), created_at=T0.replace(fold=1))
    store.insert_many([first, second])
    row = store.row(second.id)
    assert repr(row.centrality) == "-0.0"
    assert row.event_time.utcoffset() == timedelta(hours=1) and row.event_time.hour == 13
    assert row.created_at.fold == 1


def test_a_change_to_one_row_never_reaches_a_row_sharing_its_lists(store):
    a, b = _record(0), _record(5)  # same tags, same empty/non-empty history shapes
    plain = _record(1, history=[])
    other = _record(3, history=[])
    store.insert_many([a, b, plain, other])
    row_a, row_b = store.row(a.id), store.row(b.id)
    assert row_a.tags is row_b.tags and store.row(plain.id).history is store.row(other.id).history

    # In place: refused, so it cannot leak (and the shared list is unchanged).
    for mutate in (lambda t: t.append("x"), lambda t: t.extend(["x"]), lambda t: t.__setitem__(0, "x"),
                   lambda t: t.sort(), lambda t: t.clear(), lambda t: t.pop(), lambda t: t.__iadd__(["x"])):
        with pytest.raises(TypeError, match="read-only"):
            mutate(row_a.tags)
    with pytest.raises(TypeError, match="read-only"):
        store.row(plain.id).history.append({"action": "x"})
    assert row_b.tags == ["topic-0"] and store.row(other.id).history == []

    # Copies are ordinary lists the caller may change.
    for copied in (list(row_a.tags), copy.copy(row_a.tags), copy.deepcopy(row_a.tags),
                   pickle.loads(pickle.dumps(row_a.tags)), row_a.tags[:], row_a.tags + []):
        copied.append("mine")
        assert type(copied) is list and row_a.tags == ["topic-0"]

    # Through the API: tag edits, history items and reinforcement touch one record.
    dispatch(store, "memory_update", {"id": str(a.id), "tags_add": ["urgent"]})
    dispatch(store, "memory_update", {"id": str(plain.id), "pinned": True})
    dispatch(store, "memory_capture", {"text": b.literal_surface, "tags": ["again"]})
    assert store.row(a.id).tags == ["topic-0", "urgent"]
    assert store.row(b.id).tags == ["topic-0", "again"] and store.row(b.id).reinforcements == 1
    assert [h["action"] for h in store.row(plain.id).history] == ["updated"]
    assert store.row(other.id).history == [] and store.row(other.id).tags == ["topic-3"]
    assert store.row(a.id).history[-1]["action"] == "updated" and len(store.row(b.id).history) == 2


def test_find_identical_and_seqs_after_sharing(store, fake_embedder):
    # by_text is keyed by the row's own text now; seqs is an array of int.
    one, two = _record(0), _record(1, literal_surface="memory number 0 about the search API")
    store.insert_many([one, _record(2)])
    assert store.find_identical(one.literal_surface).id == one.id
    store.insert_many([two])  # the same text, stored again (e.g. after a forget)
    store.purge([one.id])
    assert store.find_identical(one.literal_surface).id == two.id
    seqs = store.seqs()
    assert list(seqs) == sorted(seqs) and all(type(s) is int for s in seqs) and len(seqs) == 3
    store = _reopen(store, fake_embedder)
    try:
        assert store.find_identical(one.literal_surface).id == two.id and len(store.seqs()) == 2
    finally:
        store.close()


def test_row_footprint_reports_the_codes_and_per_row_arrays(tmp_path, monkeypatch, capsys):
    """``bench.row_footprint`` read ``Slots.matrix``, gone with the int8 codes:
    it reports the codes and the per-row arrays instead."""
    from bench import row_footprint
    from iai_mcp.embed import default_embedder

    # isolate_key_material sets these: monkeypatch puts them back afterwards.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv("IAI_MCP_CRYPTO_PASSPHRASE", raising=False)
    with MemoryStore(path=tmp_path / "store", embedder=default_embedder()) as store:  # its name only: no model load
        store.insert_many([_record(i) for i in range(50)])
    row_footprint.main(["--store", str(tmp_path / "store")])
    out = capsys.readouterr().out
    assert out.startswith("50 records") and "int8 codes" in out and "per-row arrays" in out
    with MemoryStore(path=tmp_path / "store", embedder=default_embedder(), read_only=True) as store:
        arrays = store._slots.arrays
        codes, per_row = row_footprint.vector_bytes(arrays)
    # int8 codes; scale, slack and norm (float32), state (int8), sealed position (int64)
    assert codes == len(arrays.codes) * EMBED_DIM and per_row == len(arrays.codes) * (4 + 4 + 4 + 1 + 8)
