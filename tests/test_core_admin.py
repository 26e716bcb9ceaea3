"""The dispatch methods behind the CLI and hooks: stats, export/import,
compact, session_start, warmup; typed errors and no writes on bad input."""
from __future__ import annotations

import pytest

from iai_mcp.core import METHODS, dispatch
from iai_mcp.core.limits import MAX_PAGE
from iai_mcp.errors import InvalidInput, LimitExceeded
from iai_mcp.core.recall import estimate_tokens
from iai_mcp.store import MemoryStore


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def _state(store: MemoryStore):
    return (len(store), store.stats()["provenance_entries"], store.stats()["versions"])


def test_method_names_are_pinned():
    assert set(METHODS) >= {
        "memory_capture", "memory_recall", "memory_get", "memory_stats", "memory_export",
        "memory_import", "memory_compact", "session_start", "warmup", "memory_list", "memory_tags",
    }


@pytest.mark.parametrize("method", ["memory_stats", "memory_compact", "warmup"])
def test_parameterless_methods_reject_parameters(store, method):
    with pytest.raises(InvalidInput, match="unknown parameter"):
        dispatch(store, method, {"verbose": True})


def test_stats_reports_counts_disk_versions_and_key(store):
    _capture(store, "one")
    stats = dispatch(store, "memory_stats", {})
    assert stats["records"] == 1 and stats["provenance_entries"] == 0
    assert stats["disk_bytes"] > 0 and stats["versions"] >= 1
    assert stats["key_source"] == "file" and stats["key_file_problem"] is None
    assert stats["embedder"] == "hash-embedder-v1" and stats["embedder_loaded"] is True
    assert stats["spill"] == {"dir": stats["spill"]["dir"], "pending": 0, "quarantined": 0}


def test_stats_flags_a_readable_key_file(store):
    (store.root / "key").chmod(0o644)
    assert "chmod 600" in dispatch(store, "memory_stats", {})["key_file_problem"]


def test_warmup_names_the_embedder(store):
    out = dispatch(store, "warmup", {})
    assert out["embedder"] == "hash-embedder-v1" and out["seconds"] >= 0


def test_compact_folds_versions(store):
    for i in range(3):
        _capture(store, f"memory {i}")
    out = dispatch(store, "memory_compact", {})
    assert out["versions_before"] > out["versions_after"] == 1


def test_export_pages_through_everything_with_provenance(store):
    ids = [_capture(store, f"fact number {i}", session_id="s", tags=["t"]) for i in range(5)]
    dispatch(store, "memory_recall", {"cue": "fact number 3", "k": 1, "session_id": "r"})
    first = dispatch(store, "memory_export", {"limit": 2})
    assert first["total"] == 5 and first["next_offset"] == 2
    assert [r["id"] for r in first["records"]] == ids[:2]
    rest = dispatch(store, "memory_export", {"offset": 2, "limit": 10})
    assert rest["next_offset"] is None and [r["id"] for r in rest["records"]] == ids[2:]
    by_text = {r["text"]: r for r in first["records"] + rest["records"]}
    assert by_text["fact number 3"]["provenance"][0]["cue"] == "fact number 3"
    assert by_text["fact number 0"]["tags"] == ["t"] and by_text["fact number 0"]["session_id"] == "s"


def _export_all(store, between=None, **params):
    """Every page of an export; ``between(page_number)`` runs after each page."""
    exported, offset, pages = [], 0, 0
    while offset is not None:
        page = dispatch(store, "memory_export", {**params, "offset": offset, "limit": 2})
        exported += [r["id"] for r in page["records"]]
        offset, pages = page["next_offset"], pages + 1
        if between and offset is not None:
            between(pages)
    return exported


@pytest.mark.parametrize("include_hidden", [False, True])
def test_export_pages_stay_put_when_memories_are_forgotten_between_pages(store, include_hidden):
    ids = [_capture(store, f"fact number {i}") for i in range(8)]

    def forget(pages):
        if pages == 1:  # m0 and m1 are out: hide one, purge the other
            dispatch(store, "memory_forget", {"ids": [ids[0]]})
            dispatch(store, "memory_forget", {"ids": [ids[1]], "mode": "purge"})
        if pages == 2:  # not exported yet: m7 is purged, m6 hidden
            dispatch(store, "memory_forget", {"ids": [ids[7]], "mode": "purge"})
            dispatch(store, "memory_forget", {"ids": [ids[6]]})

    exported = _export_all(store, forget, include_hidden=include_hidden)
    # Exportable at the start and not forgotten before its page: exactly once each.
    assert exported == ids[:6] + ([ids[6]] if include_hidden else [])
    assert dispatch(store, "memory_export", {"include_hidden": include_hidden})["total"] == (6 if include_hidden else 4)


def test_export_position_survives_a_reopen_that_drops_purged_slots(store, tmp_path, fake_embedder):
    from iai_mcp.store import MemoryStore

    ids = [_capture(store, f"fact number {i}") for i in range(5)]
    first = dispatch(store, "memory_export", {"limit": 2})
    dispatch(store, "memory_forget", {"ids": ids[:2], "mode": "purge"})
    store.close()
    with MemoryStore(path=tmp_path / "store", embedder=fake_embedder) as reopened:
        rest = dispatch(reopened, "memory_export", {"offset": first["next_offset"], "limit": 10})
    assert [r["id"] for r in first["records"] + rest["records"]] == ids


@pytest.mark.parametrize("params, error", [
    ({"limit": 0}, InvalidInput),
    ({"limit": MAX_PAGE + 1}, LimitExceeded),
    ({"offset": -1}, InvalidInput),
    ({"offset": "3"}, InvalidInput),
])
def test_export_rejects_bad_paging(store, params, error):
    with pytest.raises(error):
        dispatch(store, "memory_export", params)


def test_import_round_trip_into_a_new_store(store, tmp_path, fake_embedder):
    rid = _capture(store, "The launch moved to June 3", session_id="s1", role="user",
                   tags=["launch"], ts="2024-04-01T10:00:00+00:00", pinned=True)
    dispatch(store, "memory_recall", {"cue": "launch date", "k": 1, "session_id": "s2"})
    exported = dispatch(store, "memory_export", {})["records"]
    with MemoryStore(path=tmp_path / "other", embedder=fake_embedder) as other:
        out = dispatch(other, "memory_import", {"records": exported})
        assert (out["inserted"], out["reinforced"], out["skipped"]) == (1, 0, 0)
        got = dispatch(other, "memory_get", {"id": out["record_ids"][0]})
        assert out["record_ids"][0] == rid  # issue 11: an import keeps the exported id
        assert got["literal_surface"] == "The launch moved to June 3"
        assert (got["session_id"], got["role"], got["tags"], got["pinned"]) == ("s1", "user", ["launch"], True)
        assert got["ts"].startswith("2024-04-01T10:00:00")
        assert [p["cue"] for p in got["provenance"]] == ["launch date"]
        again = dispatch(other, "memory_import", {"records": exported})
        assert (again["inserted"], again["skipped"]) == (0, 1)
        assert len(other) == 1
        assert len(dispatch(other, "memory_get", {"id": out["record_ids"][0]})["provenance"]) == 1


def test_import_checks_every_record_before_writing(store):
    before = _state(store)
    good = {"text": "fine"}
    for bad, error in [
        ({"text": ""}, InvalidInput),
        ({"text": "x", "tier": "cosmic"}, InvalidInput),
        ({"text": "x", "provenance": ["not an object"]}, InvalidInput),
        ({"text": "x", "colour": "blue"}, InvalidInput),
        ("just a string", InvalidInput),
    ]:
        with pytest.raises(error, match=r"records\[1\]"):
            dispatch(store, "memory_import", {"records": [good, bad]})
    with pytest.raises(LimitExceeded):
        dispatch(store, "memory_import", {"records": [good] * (MAX_PAGE + 1)})
    with pytest.raises(InvalidInput, match="'records' is required"):
        dispatch(store, "memory_import", {})
    assert _state(store) == before


def test_import_dry_run_writes_nothing(store):
    before = _state(store)
    out = dispatch(store, "memory_import", {"records": [{"text": "a"}, {"text": "b"}], "dry_run": True})
    assert out["checked"] == 2 and out["inserted"] == 0 and out["dry_run"] is True
    assert _state(store) == before


def test_session_start_packs_pinned_then_recent_use_within_budget(store):
    old = _capture(store, "an old captured note", ts="2024-01-01T00:00:00+00:00")
    _capture(store, "a fresher note")
    pinned = _capture(store, "Always answer in British English", pinned=True)
    _capture(store, "this session's own turn", session_id="current")
    dispatch(store, "memory_recall", {"cue": "an old captured note", "k": 1})
    out = dispatch(store, "session_start", {"session_id": "current"})
    order = [m["record_id"] for m in out["memories"]]
    assert order[0] == pinned and out["memories"][0]["why"] == "pinned"
    assert order[1] == old and out["memories"][1]["why"] == "recalled"
    assert "this session's own turn" not in out["text"]
    assert out["text"].count("\n- [") == 3
    assert estimate_tokens(out["text"]) <= out["budget_used"] <= 3000


def test_session_start_skips_what_does_not_fit_and_keeps_the_budget(store):
    _capture(store, "long " * 400)
    short = _capture(store, "short and sweet")
    out = dispatch(store, "session_start", {"budget_tokens": 120})
    assert [m["record_id"] for m in out["memories"]] == [short]
    assert estimate_tokens(out["text"]) <= 120
    assert dispatch(store, "session_start", {"budget_tokens": 5}) == {"text": "", "budget_used": 0, "memories": []}
    with pytest.raises(LimitExceeded):
        dispatch(store, "session_start", {"budget_tokens": 10**9})


def test_reimport_restores_provenance_an_interrupted_import_lost(store, tmp_path, fake_embedder, monkeypatch):
    from iai_mcp.errors import StoreError

    _capture(store, "The launch moved to June 3", session_id="s1", ts="2024-04-01T10:00:00+00:00")
    dispatch(store, "memory_recall", {"cue": "launch date sk-ant-api03-" + "a" * 40, "k": 1})
    exported = dispatch(store, "memory_export", {})["records"]
    with MemoryStore(path=tmp_path / "other", embedder=fake_embedder) as other:
        real_append = other.append_provenance_batch

        def failing(pairs, *args, **kwargs):
            raise StoreError("disk full")

        monkeypatch.setattr(other, "append_provenance_batch", failing)
        with pytest.raises(StoreError):
            dispatch(other, "memory_import", {"records": exported})
        assert len(other) == 1 and other.stats()["provenance_entries"] == 0
        monkeypatch.setattr(other, "append_provenance_batch", real_append)

        again = dispatch(other, "memory_import", {"records": exported})
        assert (again["inserted"], again["skipped"]) == (0, 1)
        cues = [p["cue"] for p in dispatch(other, "memory_get", {"id": again["record_ids"][0]})["provenance"]]
        assert len(cues) == 1 and cues[0].startswith("launch date") and "a" * 40 not in cues[0]
        # Once restored, a further import adds nothing.
        dispatch(other, "memory_import", {"records": exported})
        assert other.stats()["provenance_entries"] == 1


def test_an_export_line_is_always_importable(store):
    from iai_mcp.core.contract import ImportRecord

    _capture(store, "exported", tags=["x"], pinned=True)
    record = dispatch(store, "memory_export", {})["records"][0]
    assert list(record) == ["id", "text", "tier", "tags", "session_id", "role", "ts", "pinned",
                            "language", "created_at", "updated_at", "reinforcements", "provenance",
                            "state", "valid_from", "valid_to", "superseded_by", "hidden_at", "undo_until",
                            "history", "project"]
    assert set(record) <= set(ImportRecord.model_fields)


@pytest.mark.parametrize("provenance", ["", 0, {}, False, [{1: "not a string key"}]])
def test_import_rejects_provenance_that_is_not_a_list_of_objects(store, provenance):
    # These used to pass as "no provenance" (a falsy value) or be stored as given.
    before = _state(store)
    with pytest.raises(InvalidInput, match=r"records\[0\]: 'provenance"):
        dispatch(store, "memory_import", {"records": [{"text": "x", "provenance": provenance}]})
    assert _state(store) == before
