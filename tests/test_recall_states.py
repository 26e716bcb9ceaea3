"""Recall, the keyword index and the session pack follow each memory's state:
hidden and purged rows never rank nor lend context, superseded ones are
anti-hits, a restored one comes back; a recall racing a hide never returns a
broken hit."""
from __future__ import annotations

import threading
from datetime import timedelta
from uuid import UUID

import numpy as np

from iai_mcp.core import dispatch
from iai_mcp.core.recall import keyword_index
from iai_mcp.retrieval import KeywordIndex
from iai_mcp.store import PURGED
from iai_mcp.types import utcnow


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def _recall(store, cue, **extra):
    return dispatch(store, "memory_recall", {"cue": cue, **extra})


def _hide(store, rid):
    now = utcnow()
    store.update(UUID(rid), hidden_at=now, undo_until=now + timedelta(days=30))


def _restore(store, rid):
    store.update(UUID(rid), hidden_at=None, undo_until=None)


def test_keyword_index_restore_undoes_remove():
    index = KeywordIndex()
    for doc, text in enumerate(["red apple pie", "green apple", "blue sky"]):
        index.add(doc, text)
    before = index.scores("apple").copy()
    index.remove(0)
    assert index.scores("apple")[0] == 0 and index.live == 2
    assert not index.label_match("apple").any()
    index.restore(0)
    index.restore(0)  # a no-op the second time
    assert index.live == 3 and np.allclose(index.scores("apple"), before)
    for bad in (-1, 3):
        try:
            index.restore(bad)
        except IndexError:
            pass
        else:
            raise AssertionError("restore of a slot that does not exist must raise")


def test_hidden_memories_leave_recall_and_the_index_at_once_and_come_back_restored(store):
    secret = _capture(store, "my PIN is 4821 for the garage door", session_id="s")
    _capture(store, "the garage door opener needs new batteries", session_id="s")
    assert secret in [h["record_id"] for h in _recall(store, "garage PIN")["hits"]]
    _hide(store, secret)
    out = _recall(store, "garage PIN 4821", include_superseded=True)
    assert secret not in [h["record_id"] for h in out["hits"] + out["anti_hits"]]
    slot = [row.id for row in store.rows()].index(UUID(secret))
    assert keyword_index(store).removed(slot) and keyword_index(store).scores("4821")[slot] == 0
    _restore(store, secret)
    assert not keyword_index(store).removed(slot)
    assert _recall(store, "garage PIN 4821")["hits"][0]["record_id"] == secret


def test_hidden_and_purged_rows_lend_no_context(store):
    # The strong keyword hit sits next to a neutral turn of the same session;
    # forgotten, it must no longer lift its neighbour through the window.
    strong = _capture(store, "zanzibar zanzibar zanzibar itinerary", session_id="trip")
    neighbour = _capture(store, "ok sounds good", session_id="trip")
    for i in range(30):
        _capture(store, f"unrelated filler number {i}", session_id=f"other{i}")
    before = {h["record_id"]: h["score"] for h in _recall(store, "zanzibar", k=50)["hits"]}
    _hide(store, strong)
    after = {h["record_id"]: h["score"] for h in _recall(store, "zanzibar", k=50)["hits"]}
    assert strong not in after and after[neighbour] < before[neighbour]


def test_a_purged_slot_never_ranks(store):
    rid = _capture(store, "purged words about volcanoes")
    _capture(store, "kept words about volcanoes")
    slot = [row.id for row in store.rows()].index(UUID(rid))
    dispatch(store, "memory_forget", {"ids": [rid], "mode": "purge"})
    assert store.states()[slot] == PURGED  # the emptied slot stays while the store is open
    out = _recall(store, "volcanoes", include_superseded=True)
    assert rid not in [h["record_id"] for h in out["hits"]] and len(out["hits"]) == 1
    assert keyword_index(store).removed(slot)


def test_superseded_rows_fill_the_head_and_hits_still_come(store):
    # Not "the wifi password is hunterN": that is a secret, redacted to one text (core.redact).
    olds = [_capture(store, f"the wifi password of room {i} is on the hunter card") for i in range(80)]
    new = _capture(store, "the wifi password changed to correcthorse", supersedes=[olds[-1]])
    for i, old in enumerate(olds[:-1]):
        _capture(store, f"wifi password note {i}", supersedes=[old])
    out = _recall(store, "wifi password hunter", k=3)
    assert len(out["hits"]) == 3 and all(h["state"] == "active" for h in out["hits"])
    assert out["anti_hits"] and all(a["superseded_by"] for a in out["anti_hits"])
    assert new in [h["record_id"] for h in _recall(store, "correcthorse", k=1)["hits"]]


def test_anti_hits_share_the_budget_and_carry_no_provenance(store):
    old = _capture(store, "launch date is March 3 " + "detail " * 50)
    new = _capture(store, "launch date moved to June 3", supersedes=[old])
    out = _recall(store, "launch date", budget_tokens=20)
    assert [h["record_id"] for h in out["hits"]] == [new] and out["anti_hits"] == []
    assert out["budget_used"] <= 20
    out = _recall(store, "launch date")
    assert [a["record_id"] for a in out["anti_hits"]] == [old]
    store.flush_provenance(5)
    assert store.provenance_of(UUID(old)) == []


def test_session_pack_drops_hidden_and_superseded_at_once(store):
    keep = _capture(store, "keep me in the pack", pinned=True)
    gone = _capture(store, "forget me", pinned=True)
    old = _capture(store, "old fact for the pack")
    new = _capture(store, "new fact for the pack", supersedes=[old])
    _hide(store, gone)
    ids = [m["record_id"] for m in dispatch(store, "session_start", {})["memories"]]
    assert keep in ids and new in ids and gone not in ids and old not in ids
    _restore(store, gone)
    assert gone in [m["record_id"] for m in dispatch(store, "session_start", {})["memories"]]


def test_a_recall_racing_hides_returns_whole_hits(store):
    ids = [_capture(store, f"racing memory number {i} about sailing", session_id=f"s{i % 5}") for i in range(60)]
    stop = threading.Event()
    problems: list[str] = []

    def flip():
        i = 0
        while not stop.is_set():
            rid = ids[i % len(ids)]
            _hide(store, rid)
            _restore(store, rid)
            i += 1

    worker = threading.Thread(target=flip)
    worker.start()
    try:
        for _ in range(200):
            out = _recall(store, "sailing memory", k=5)
            for hit in out["hits"]:
                if hit["state"] == "hidden" or not hit["literal_surface"].startswith("racing memory"):
                    problems.append(repr(hit))
                if store.row(UUID(hit["record_id"])) is None:
                    problems.append("unknown id " + hit["record_id"])
    finally:
        stop.set()
        worker.join(10)
    assert not problems, problems[:3]
