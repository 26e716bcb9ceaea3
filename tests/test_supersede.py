"""memory_capture(supersedes=...): corrections, their checks, anti-hits,
validity fields, related memories and capture's history items."""
from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.capture import MAX_REINFORCED_HISTORY, RELATED_MIN_SCORE, related_to
from iai_mcp.errors import InvalidInput, LimitExceeded, NotFound
from iai_mcp.types import utcnow


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})


def _get(store, rid):
    return dispatch(store, "memory_get", {"id": rid})


def _snapshot(store):
    return (len(store), store.stats()["versions"], [(r.id, r.superseded_by, r.valid_to, len(r.history),
                                                     r.reinforcements) for r in store.rows()])


def _hide(store, rid):
    now = utcnow()
    store.update(UUID(rid), hidden_at=now, undo_until=now + timedelta(days=30))


def test_supersede_links_old_to_new_and_recall_returns_it_as_anti_hit(store):
    old = _capture(store, "Our billing service runs on Postgres", ts="2024-01-01T00:00:00Z")["record_id"]
    out = _capture(store, "We moved billing from Postgres to DynamoDB", supersedes=[old],
                   ts="2024-06-01T00:00:00Z", session_id="s2")
    new = out["record_id"]
    assert out["status"] == "inserted" and "supersedes 1" in out["reason"]
    got = _get(store, old)
    assert got["state"] == "superseded" and got["superseded_by"] == new
    assert got["valid_to"].startswith("2024-06-01T00:00:00") and got["valid_from"].startswith("2024-01-01")
    assert _get(store, new)["state"] == "active" and _get(store, new)["valid_to"] is None
    recalled = dispatch(store, "memory_recall", {"cue": "which database does billing run on"})
    assert [h["record_id"] for h in recalled["hits"]] == [new]
    assert recalled["hits"][0]["valid_from"].startswith("2024-06-01") and recalled["hits"][0]["superseded_by"] is None
    (anti,) = recalled["anti_hits"]
    assert anti == {"record_id": old, "literal_surface": "Our billing service runs on Postgres",
                    "superseded_by": new, "valid_to": got["valid_to"], "score": anti["score"]}
    both = dispatch(store, "memory_recall", {"cue": "which database does billing run on",
                                             "include_superseded": True})
    assert {h["record_id"] for h in both["hits"]} == {old, new} and both["anti_hits"] == []
    hit_old = next(h for h in both["hits"] if h["record_id"] == old)
    assert hit_old["state"] == "superseded" and hit_old["superseded_by"] == new


def test_history_items_for_capture_reinforce_and_supersede(store):
    old = _capture(store, "the standup is at 9:30", session_id="a")["record_id"]
    _capture(store, "the standup is at 9:30", session_id="b")
    new = _capture(store, "standup moved to 10:00", supersedes=[old], session_id="c")["record_id"]
    history = store.row(UUID(old)).history
    assert [h["action"] for h in history] == ["captured", "reinforced", "superseded"]
    assert history[1]["session_id"] == "b" and history[2]["detail"] == {"superseded_by": new}
    assert all(set(h) == {"ts", "action", "session_id", "detail"} for h in history)
    (created,) = store.row(UUID(new)).history
    assert created["action"] == "captured" and created["detail"] == {"supersedes": [old]}


def test_reinforced_history_stops_growing_but_the_count_stays_exact(store, monkeypatch):
    from iai_mcp.core import capture

    monkeypatch.setattr(capture, "MAX_REINFORCED_HISTORY", 2)
    rid = _capture(store, "ok, go on")["record_id"]
    for i in range(4):
        _capture(store, "ok, go on", session_id=f"s{i}")
    row = store.row(UUID(rid))
    assert row.reinforcements == 4
    assert [h["action"] for h in row.history] == ["captured", "reinforced", "reinforced"]
    assert MAX_REINFORCED_HISTORY >= 100


@pytest.mark.parametrize("case", ["unknown", "hidden", "itself", "already", "cycle", "bad_id", "one_bad"])
def test_bad_supersedes_is_an_error_and_nothing_is_written(store, case):
    turn = {"session_id": "s", "ts": "2025-03-01T00:00:00Z"}
    a = _capture(store, "fact A", **turn)["record_id"]
    b = _capture(store, "fact B", supersedes=[a])["record_id"]
    c = _capture(store, "fact C")["record_id"]
    if case == "hidden":
        _hide(store, c)
    before = _snapshot(store)
    text, targets, error = {
        "unknown": ("fact D", [str(uuid4())], NotFound),
        "hidden": ("fact D", [c], InvalidInput),
        "itself": ("fact C", [c], InvalidInput),            # identical text folds into c
        "already": ("fact D", [a], InvalidInput),            # a is already superseded by b
        "cycle": ("fact A", [b], InvalidInput),              # the same turn folds into a, which b supersedes
        "bad_id": ("fact D", ["not-a-uuid"], InvalidInput),
        "one_bad": ("fact D", [c, str(uuid4())], NotFound),  # c alone would be fine
    }[case]
    # "cycle": the turn that captured a, sent again, folds into a (a different
    # turn saying "fact A" again would be a new memory, which may supersede b).
    with pytest.raises(error) as info:
        _capture(store, text, supersedes=targets, **(turn if case == "cycle" else {}))
    assert str(info.value).startswith("memory_capture")
    if case == "unknown":
        assert targets[0] in str(info.value)
    assert _snapshot(store) == before
    assert store.find_identical("fact D") is None


def test_too_many_supersedes_is_a_limit(store):
    from iai_mcp.core.contract import MAX_SUPERSEDES

    with pytest.raises(LimitExceeded):
        _capture(store, "x", supersedes=[str(uuid4()) for _ in range(MAX_SUPERSEDES + 1)])


def test_a_resent_supersede_changes_nothing_more(store):
    old = _capture(store, "the office is on the 4th floor")["record_id"]
    args = {"supersedes": [old], "ts": "2025-01-01T00:00:00Z", "session_id": "s"}
    first = _capture(store, "we moved the office to the 7th floor", **args)
    again = _capture(store, "we moved the office to the 7th floor", **args)
    assert again["status"] == "skipped" and again["record_id"] == first["record_id"]
    assert [h["action"] for h in store.row(UUID(old)).history] == ["captured", "superseded"]


def test_a_crash_between_insert_and_link_leaves_both_active_and_a_resend_links(store, monkeypatch):
    old = _capture(store, "my sister lives in Lisbon")["record_id"]
    args = {"supersedes": [old], "ts": "2025-02-01T00:00:00Z", "session_id": "s"}
    real = store.update_many

    def crash(updates):
        raise OSError("killed")

    monkeypatch.setattr(store, "update_many", crash)
    with pytest.raises(OSError):
        _capture(store, "my sister moved from Lisbon to Berlin", **args)
    # The insert came first: no superseded_by points at a record that is missing.
    assert store.row(UUID(old)).superseded_by is None and len(store) == 2
    monkeypatch.setattr(store, "update_many", real)
    again = _capture(store, "my sister moved from Lisbon to Berlin", **args)
    assert store.row(UUID(old)).superseded_by == UUID(again["record_id"])


def test_supersede_through_the_cli(cli):
    code, out, _ = cli("capture", "I use VS Code", "--json")
    old = __import__("json").loads(out)["record_id"]
    code, out, err = cli("supersede", old, "--text", "I switched from VS Code to Neovim")
    assert code == 0 and out.startswith("inserted ") and "supersedes 1" in out
    code, out, err = cli("supersede", old, "--json", stdin="something else entirely\n")
    assert code == 1 and "already superseded" in err  # stdin is read; old is taken already
    code, out, err = cli("supersede", "not-a-uuid", "--text", "x")
    assert code == 1 and "supersedes" in err
    code, out, _ = cli("recall", "which editor", "--json")
    data = __import__("json").loads(out)
    assert [a["record_id"] for a in data["anti_hits"]] == [old]
    code, out, _ = cli("recall", "which editor")
    assert "superseded" in out and old in out


def test_related_lists_close_active_memories_above_the_threshold(store):
    a = _capture(store, "alpha beta gamma delta")["record_id"]
    _capture(store, "something entirely unrelated here")
    out = _capture(store, "alpha beta gamma delta epsilon")
    ids = [r["record_id"] for r in out["related"]]
    assert ids == [a]
    assert out["related"][0]["score"] >= RELATED_MIN_SCORE and out["related"][0]["excerpt"] == "alpha beta gamma delta"
    # Never merged: both stay, both active.
    assert len(store) == 3 and _get(store, a)["state"] == "active"
    # A superseded memory is not "related" any more.
    new = _capture(store, "alpha beta gamma delta zeta", supersedes=[a])
    assert a not in [r["record_id"] for r in new["related"]]


def test_related_is_at_most_three_and_excerpts_are_short(store, fake_embedder):
    base = "tea " * 100
    for i in range(5):
        _capture(store, base + f"variant{i}")
    found = related_to(store, fake_embedder.embed([base])[0], exclude=uuid4())
    assert len(found) == 3 and all(len(r.excerpt) <= 160 for r in found)
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)


# ---- a text said again after its memory was forgotten or corrected ----------


def test_a_text_identical_to_a_forgotten_memory_is_stored_as_a_new_active_one(store, tmp_path, fake_embedder):
    from iai_mcp.store import MemoryStore

    first = _capture(store, "my PIN is 4821", session_id="a", ts="2025-01-01T00:00:00Z")["record_id"]
    dispatch(store, "memory_forget", {"ids": [first]})
    # The forgotten turn replayed (a hook re-reading a transcript) stays forgotten.
    replay = _capture(store, "my PIN is 4821", session_id="a", ts="2025-01-01T00:00:00Z")
    assert (replay["status"], replay["record_id"]) == ("skipped", first) and "stays forgotten" in replay["reason"]
    assert _get(store, first)["state"] == "hidden" and len(store) == 1
    again = _capture(store, "my PIN is 4821", session_id="b")
    assert again["status"] == "inserted" and again["record_id"] != first
    assert "forgotten" in again["reason"] and first in again["reason"] and "new active memory" in again["reason"]
    assert _get(store, again["record_id"])["state"] == "active" and _get(store, first)["state"] == "hidden"
    recalled = dispatch(store, "memory_recall", {"cue": "my PIN"})
    assert [h["record_id"] for h in recalled["hits"]] == [again["record_id"]]
    # Later repeats fold into the active one, also after the store is reopened.
    third = _capture(store, "my PIN is 4821", session_id="c")
    assert (third["status"], third["record_id"]) == ("reinforced", again["record_id"])
    assert _get(store, first)["state"] == "hidden"
    # Purging the forgotten one leaves the new one answering repeats.
    dispatch(store, "memory_forget", {"ids": [first], "mode": "purge"})
    store.close()
    with MemoryStore(path=tmp_path / "store", embedder=fake_embedder) as reopened:
        assert reopened.find_identical("my PIN is 4821").id == UUID(again["record_id"])
        fourth = _capture(reopened, "my PIN is 4821", session_id="d")
        assert (fourth["status"], fourth["record_id"]) == ("reinforced", again["record_id"])


def test_the_identical_text_map_prefers_the_active_record_when_reopened(store, tmp_path, fake_embedder):
    from iai_mcp.store import MemoryStore

    first = _capture(store, "the deploy key rotates monthly", session_id="a")["record_id"]
    dispatch(store, "memory_forget", {"ids": [first]})
    second = _capture(store, "the deploy key rotates monthly", session_id="b")["record_id"]
    store.close()
    with MemoryStore(path=tmp_path / "store", embedder=fake_embedder) as reopened:
        assert reopened.find_identical("the deploy key rotates monthly").id == UUID(second)


def test_a_text_identical_to_a_superseded_memory_is_stored_as_a_new_active_one(store):
    old = _capture(store, "billing runs on Postgres", session_id="a")["record_id"]
    new = _capture(store, "we moved billing to DynamoDB", supersedes=[old], session_id="b")["record_id"]
    back = _capture(store, "billing runs on Postgres", supersedes=[new], session_id="c")
    assert back["status"] == "inserted" and back["record_id"] not in (old, new)
    assert "superseded" in back["reason"] and old in back["reason"] and "new active memory" in back["reason"]
    assert [_get(store, rid)["state"] for rid in (old, new, back["record_id"])] == [
        "superseded", "superseded", "active"]
    assert _get(store, old)["superseded_by"] == new and _get(store, new)["superseded_by"] == back["record_id"]
    recalled = dispatch(store, "memory_recall", {"cue": "billing runs on Postgres"})
    assert [h["record_id"] for h in recalled["hits"]] == [back["record_id"]]
    # Said once more without a correction: it only reinforces the current one.
    once_more = _capture(store, "billing runs on Postgres", session_id="d")
    assert (once_more["status"], once_more["record_id"]) == ("reinforced", back["record_id"])


def test_an_imported_text_identical_to_a_forgotten_memory_is_a_new_record(store):
    first = _capture(store, "my PIN is 4821", session_id="a")["record_id"]
    dispatch(store, "memory_forget", {"ids": [first]})
    out = dispatch(store, "memory_import", {"records": [{"text": "my PIN is 4821", "session_id": "x"},
                                                        {"text": "my PIN is 4821", "session_id": "y"}]})
    assert (out["inserted"], out["reinforced"]) == (1, 1) and first not in out["record_ids"]
    assert out["record_ids"][0] == out["record_ids"][1]
    assert _get(store, out["record_ids"][0])["state"] == "active" and _get(store, first)["state"] == "hidden"
