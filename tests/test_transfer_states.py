"""Export and import carry each memory's lifecycle: hidden memories (only when
asked) with their undo deadline, superseded links, history; an import never
creates a memory it does not contain."""
from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.transfer import imported_id
from iai_mcp.errors import InvalidInput, NotFound
from iai_mcp.store import MemoryStore
from iai_mcp.types import utcnow


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def _export(store, **params):
    return dispatch(store, "memory_export", params)


@pytest.fixture
def other(tmp_path, fake_embedder):
    with MemoryStore(path=tmp_path / "other", embedder=fake_embedder) as s:
        yield s


def _lifecycle_store(store):
    old = _capture(store, "billing runs on Postgres", session_id="a")
    new = _capture(store, "billing moved to DynamoDB", supersedes=[old], session_id="b")
    gone = _capture(store, "my PIN is 4821")
    now = utcnow()
    store.update(UUID(gone), hidden_at=now, undo_until=now + timedelta(days=30),
                 history={"ts": now.isoformat(), "action": "hidden", "session_id": None, "detail": None})
    return old, new, gone


def test_export_leaves_hidden_out_unless_asked(store):
    old, new, gone = _lifecycle_store(store)
    page = _export(store)
    assert [r["id"] for r in page["records"]] == [old, new] and page["total"] == 2
    assert page["next_offset"] is None
    by_id = {r["id"]: r for r in page["records"]}
    assert by_id[old]["state"] == "superseded" and by_id[old]["superseded_by"] == new
    assert [h["action"] for h in by_id[old]["history"]] == ["captured", "superseded"]
    full = _export(store, include_hidden=True)
    assert [r["id"] for r in full["records"]] == [old, new, gone] and full["total"] == 3
    hidden = full["records"][2]
    assert hidden["state"] == "hidden" and hidden["undo_until"] and hidden["hidden_at"]
    first = _export(store, include_hidden=True, limit=2)
    assert first["next_offset"] == 2 and [r["id"] for r in first["records"]] == [old, new]


def test_import_restores_links_hidden_state_and_history_across_calls(store, other):
    old, new, gone = _lifecycle_store(store)
    records = _export(store, include_hidden=True)["records"]
    # One record per call, the replaced one first: the link still finds its record.
    ids = [dispatch(other, "memory_import", {"records": [r]})["record_ids"][0] for r in records]
    assert ids == [str(imported_id(old)), str(imported_id(new)), str(imported_id(gone))]
    got_old = dispatch(other, "memory_get", {"id": ids[0]})
    assert got_old["state"] == "superseded" and got_old["superseded_by"] == ids[1]
    assert got_old["valid_to"] == records[0]["valid_to"]
    hidden = dispatch(other, "memory_get", {"id": ids[2]})
    assert hidden["state"] == "hidden" and other.row(UUID(ids[2])).undo_until.isoformat() == records[2]["undo_until"]
    assert other.row(UUID(ids[0])).history == records[0]["history"]
    recalled = dispatch(other, "memory_recall", {"cue": "where does billing run"})
    assert [h["record_id"] for h in recalled["hits"]] == [ids[1]]
    assert [a["record_id"] for a in recalled["anti_hits"]] == [ids[0]]
    # Imported again: everything is already there, nothing changes.
    again = dispatch(other, "memory_import", {"records": records})
    assert again["skipped"] == 3 and len(other) == 3


def test_import_never_creates_a_memory_it_does_not_contain(store, other):
    old, new, _ = _lifecycle_store(store)
    replaced_only = [r for r in _export(store)["records"] if r["id"] == old]
    out = dispatch(other, "memory_import", {"records": replaced_only})
    assert len(other) == 1
    got = dispatch(other, "memory_get", {"id": out["record_ids"][0]})
    # Still replaced (not revived as a current fact); the replacement is not conjured up.
    assert got["state"] == "superseded" and got["superseded_by"] == str(imported_id(new))
    with pytest.raises(NotFound):
        dispatch(other, "memory_get", {"id": str(imported_id(new))})


def test_import_never_folds_a_record_with_an_id_into_a_stored_text(store, other):
    # Issue 11 review: a record whose id is not stored is inserted under it even
    # when its text is already there (folding it lost a memory on a round trip),
    # and its link finds the imported replacement, not the text it shares.
    old, new, _ = _lifecycle_store(store)
    records = _export(store)["records"]
    existing = _capture(other, "billing moved to DynamoDB")  # the same text, another memory
    out = dispatch(other, "memory_import", {"records": records})
    assert (out["inserted"], out["reinforced"], out["skipped"]) == (2, 0, 0)
    assert out["record_ids"] == [str(imported_id(old)), str(imported_id(new))]
    assert dispatch(other, "memory_get", {"id": out["record_ids"][0]})["superseded_by"] == str(imported_id(new))
    assert other.row(UUID(existing)).reinforcements == 0 and len(other) == 3


@pytest.mark.parametrize("bad", [
    {"superseded_by": "not-a-uuid"},
    {"hidden_at": "2024-01-01T00:00:00Z"},                    # without undo_until
    {"undo_until": "yesterday", "hidden_at": "2024-01-01T00:00:00Z"},
    {"history": ["not an object"]},
    {"supersedes": ["8f0c2a4e-6a55-4f37-9a3e-2b7d1c9e5f41"]},
    {"valid_to": 5},
])
def test_import_rejects_bad_lifecycle_fields_and_writes_nothing(store, bad):
    before = (len(store), store.stats()["versions"])
    with pytest.raises(InvalidInput, match=r"records\[1\]"):
        dispatch(store, "memory_import", {"records": [{"text": "fine"}, {"text": "x", **bad}]})
    assert (len(store), store.stats()["versions"]) == before


def test_cli_export_include_hidden(cli, tmp_path):
    import json

    cli("capture", "visible")
    code, out, _ = cli("capture", "to hide", "--json")
    rid = json.loads(out)["record_id"]
    with MemoryStore(path=cli.store) as s:
        now = utcnow()
        s.update(UUID(rid), hidden_at=now, undo_until=now + timedelta(days=1))
    _, out, _ = cli("export", "--plaintext")
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["visible"]
    _, out, _ = cli("export", "--plaintext", "--include-hidden")
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["visible", "to hide"]


# ---- supersede cycles brought by an import ---------------------------------

_A, _B, _C = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
              "33333333-3333-4333-8333-333333333333")


def _state(store):
    return (len(store), store.stats()["versions"], [(r.id, r.superseded_by) for r in store.rows()])


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_import_whose_links_make_a_cycle_is_refused_and_writes_nothing(other, dry_run):
    _capture(other, "already here")
    before = _state(other)
    records = [{"id": _A, "text": "billing runs on Postgres", "superseded_by": _B},
               {"id": _B, "text": "billing runs on DynamoDB", "superseded_by": _C},
               {"id": _C, "text": "already here", "superseded_by": _A},  # folds into the stored one: no link
               {"id": str(UUID(int=4)), "text": "billing runs on MySQL", "superseded_by": _A}]
    # Without the folding record's link there is no cycle; with it back in, A -> B -> A:
    records[1]["superseded_by"] = _A
    with pytest.raises(InvalidInput) as info:
        dispatch(other, "memory_import", {"records": records, "dry_run": dry_run})
    message = str(info.value)
    assert "cycle" in message and _A in message and _B in message and "records[0]" in message
    assert _state(other) == before
    recalled = dispatch(other, "memory_recall", {"cue": "billing"})
    assert all(h["record_id"] != str(imported_id(_A)) for h in recalled["hits"])


def test_an_import_whose_links_close_a_cycle_through_the_store_is_refused(other):
    # An earlier call brought A replaced by B (B not yet there): a link to nothing.
    dispatch(other, "memory_import", {"records": [{"id": _A, "text": "billing runs on Postgres",
                                                  "superseded_by": _B}]})
    before = _state(other)
    with pytest.raises(InvalidInput) as info:
        dispatch(other, "memory_import", {"records": [{"id": _B, "text": "billing runs on DynamoDB",
                                                      "superseded_by": _A}]})
    assert "cycle" in str(info.value) and f"stored memory {imported_id(_A)}" in str(info.value)
    assert _state(other) == before
    # Without the back link B arrives and completes the chain A -> B.
    dispatch(other, "memory_import", {"records": [{"id": _B, "text": "billing runs on DynamoDB"}]})
    recalled = dispatch(other, "memory_recall", {"cue": "billing runs on"})
    assert [h["record_id"] for h in recalled["hits"]] == [str(imported_id(_B))]


def test_a_chain_without_a_cycle_imports(other):
    records = [{"id": _A, "text": "v1 of the plan", "superseded_by": _B},
               {"id": _B, "text": "v2 of the plan", "superseded_by": _C},
               {"id": _C, "text": "v3 of the plan"}]
    out = dispatch(other, "memory_import", {"records": records})
    assert out["inserted"] == 3
    assert [dispatch(other, "memory_get", {"id": rid})["state"] for rid in out["record_ids"]] == [
        "superseded", "superseded", "active"]


def test_cli_import_checks_the_whole_file_for_cycles_before_the_first_batch(cli, tmp_path):
    import json

    lines = [{"id": _A, "text": "billing runs on Postgres", "superseded_by": _B},
             {"id": _C, "text": "unrelated"},
             {"id": _B, "text": "billing runs on DynamoDB", "superseded_by": _A}]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cli("init")
    code, _, err = cli("import", str(path), "--batch-size", "1")  # A and B in different calls
    assert code == 1 and "cycle" in err and _A in err and _B in err
    code, out, _ = cli("list", "--json")
    assert json.loads(out)["items"] == []
