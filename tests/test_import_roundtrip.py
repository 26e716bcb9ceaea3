"""Our own export and import keep everything (issue 11): an export imported
into an empty store gives back the same memories, field for field."""
from __future__ import annotations

import json

import pytest


def _lines(path):
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _busy_store(cli):
    """A store where every field an export carries differs from its default."""
    cli("capture", "billing runs on Postgres", "--session-id", "a", "--ts", "2024-01-02T03:04:05Z",
        "--role", "user", "--tier", "semantic", "--tag", "infra", "--tag", "billing")
    old = json.loads(cli("list", "--json")[1])["items"][0]["record_id"]
    cli("capture", "billing runs on Postgres", "--session-id", "b")  # a reinforcement
    new = json.loads(cli("supersede", old, "--text", "billing moved to DynamoDB", "--json")[1])["record_id"]
    pinned = json.loads(cli("capture", "call me Sam", "--pinned", "--language", "de", "--json")[1])["record_id"]
    gone = json.loads(cli("capture", "my locker code is 4821", "--json")[1])["record_id"]
    cli("recall", "where does billing run", "--session-id", "r1")  # provenance
    cli("tag", pinned, "--add", "name")  # history: updated
    cli("forget", "--id", gone)  # state: hidden, with its undo deadline
    return old, new, pinned, gone


def test_export_then_import_into_an_empty_store_keeps_everything(cli, tmp_path):
    old, new, pinned, gone = _busy_store(cli)
    first = tmp_path / "first.jsonl"
    assert cli("export", "--plaintext", "--include-hidden", "-o", str(first))[0] == 0
    records = _lines(first)
    by_id = {r["id"]: r for r in records}
    # The store really holds what the comparison is about.
    assert set(by_id) == {old, new, pinned, gone}
    assert by_id[old]["reinforcements"] == 1 and by_id[old]["state"] == "superseded"
    assert by_id[gone]["state"] == "hidden" and by_id[pinned]["pinned"]
    assert by_id[new]["provenance"] or by_id[old]["provenance"]
    assert [h["action"] for h in by_id[pinned]["history"]] == ["captured", "updated"]

    other = str(tmp_path / "other")
    code, out, err = cli("--store", other, "import", str(first))
    assert code == 0, err
    second = tmp_path / "second.jsonl"
    assert cli("--store", other, "export", "--plaintext", "--include-hidden", "-o", str(second))[0] == 0
    # Ids, texts, ts/created_at/updated_at, tags, pins, reinforcements,
    # provenance, state (and its deadlines and links) and history: all of it.
    assert _lines(second) == records
    assert second.read_bytes() == first.read_bytes()
    # `show <old id>` finds the memory in the new store.
    code, out, _ = cli("--store", other, "show", old, "--json")
    assert code == 0 and json.loads(out)["superseded_by"] == new


@pytest.mark.parametrize("content, says", [
    (b'{"text": "caf\xe9"}\n', "line 1: not UTF-8"),
    (b'{"text": "fine"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 2: nested too deeply"),
])
def test_import_of_invalid_utf8_or_deep_nesting_is_a_clear_error(cli, tmp_path, content, says):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    code, _, err = cli("import", str(path))
    assert code == 1 and says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not cli.store.exists()  # nothing imported, not even an empty store made


def test_export_pages_are_bounded_in_bytes_and_hold_every_record_once(store):
    from iai_mcp.core import dispatch

    for i in range(5):
        dispatch(store, "memory_capture", {"text": f"{i} " + "x" * 1000})
    dispatch(store, "memory_capture", {"text": "big " + "y" * 5000})
    one = dispatch(store, "memory_export", {"limit": 1})["records"][0]
    size = len(json.dumps(one, ensure_ascii=False, separators=(",", ":")).encode()) + 1
    budget = 2 * size + size // 2  # room for two of the small records, not three
    pages, offset = [], 0
    while offset is not None:
        page = dispatch(store, "memory_export", {"offset": offset, "limit": 1000, "max_bytes": budget})
        pages.append(page["records"])
        offset = page["next_offset"]
    assert [len(p) for p in pages] == [2, 2, 1, 1]  # the record larger than a page comes alone
    assert all(len(json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode()) <= budget for p in pages[:3])
    assert [r["text"][:2] for p in pages for r in p] == ["0 ", "1 ", "2 ", "3 ", "4 ", "bi"]


@pytest.mark.slow
def test_export_through_the_daemon_of_more_than_one_wire_message(cli, tmp_path, monkeypatch):
    """The daemon's single reply is at most 32 MiB; an export of ~36 MB must
    still come through (it used to fail with a message about k and budget)."""
    from iai_mcp import backend
    from iai_mcp.daemon import wire

    monkeypatch.delenv("IAI_MCP_LOCAL")  # through the daemon, as a user runs it
    text_chars, count = 90_000, 400
    assert text_chars * count > wire.MAX_MESSAGE_BYTES
    connection = backend.connect(cli.store)
    try:
        for start in range(0, count, 40):
            connection.call("memory_import", {"records": [
                {"text": f"memory {i}: " + f"word{i} " * (text_chars // (len(str(i)) + 5))}
                for i in range(start, start + 40)]})
    finally:
        connection.close()
    target = tmp_path / "big.jsonl"
    code, _, err = cli("export", "--plaintext", "-o", str(target))
    assert code == 0, err
    assert target.stat().st_size > wire.MAX_MESSAGE_BYTES
    records = _lines(target)
    assert len(records) == count and len({r["id"] for r in records}) == count


def test_every_exported_field_is_one_import_takes():
    """An export line carries every field of a memory; import must accept each
    (a field added to memories later, such as a project, rides along)."""
    from iai_mcp.core.contract import ImportRecord
    from iai_mcp.core.results import ExportedRecord, Memory

    exported = set(ExportedRecord.__annotations__)
    assert {"id", "text", "reinforcements", "history", "provenance", "hidden_at"} <= exported
    from iai_mcp.core.results import EXPORT_NAMES, NOT_EXPORTED

    # Every field of a memory; a count of one read (provenance_damaged) is not one.
    assert NOT_EXPORTED == {"provenance_damaged"}
    assert {EXPORT_NAMES.get(name, name) for name in Memory.__annotations__ if name not in NOT_EXPORTED} <= exported
    assert exported <= set(ImportRecord.model_fields)


def test_texts_with_unicode_line_separators_survive_the_round_trip(cli, tmp_path):
    text = "first\u2028second\u2029third\x85fourth\x1cfifth\r\nsixth"
    cli("capture", text)
    dump = tmp_path / "dump.jsonl"
    cli("export", "--plaintext", "-o", str(dump))
    code, out, err = cli("--store", str(tmp_path / "other"), "import", str(dump))
    assert code == 0, err
    record = json.loads(cli("--store", str(tmp_path / "other"), "list", "--json")[1])["items"][0]
    assert record["literal_surface"] == text


def test_a_much_recalled_memory_keeps_all_its_provenance(store, tmp_path, fake_embedder):
    """A memory recalled more than 10,000 times (a pinned preference, a year of
    sessions) used to be refused on import: provenance capped at 10,000 entries."""
    from uuid import UUID

    from iai_mcp.core import dispatch
    from iai_mcp.store import MemoryStore

    rid = dispatch(store, "memory_capture", {"text": "I prefer tabs"})["record_id"]
    store.append_provenance_batch([(UUID(rid), {"ts": f"2025-01-01T00:00:{i % 60:02d}+00:00", "cue": f"cue {i}",
                                                "session_id": "s"}) for i in range(12_000)])
    record = dispatch(store, "memory_export", {})["records"][0]
    assert len(record["provenance"]) == 12_000
    with MemoryStore(path=tmp_path / "other", embedder=fake_embedder) as other:
        assert dispatch(other, "memory_import", {"records": [record]})["inserted"] == 1
        assert dispatch(other, "memory_get", {"id": rid})["provenance"] == record["provenance"]
