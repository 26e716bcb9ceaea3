"""Importers (issue 11): each foreign format read from a fixture built from
its documentation; damaged input is an error naming the line, and nothing is
imported."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from iai_mcp import importers
from iai_mcp.errors import InvalidInput

DATA = Path(__file__).parent / "data" / "importers"


def _records(fmt, path):
    items = importers.read(fmt, path)
    importers.check(items)
    return [item.record for item in items]


def test_mcp_memory_each_observation_and_relation_is_a_memory_tagged_with_entity_and_type(tmp_path):
    path = tmp_path / "memory.json"
    shutil.copy(DATA / "memory.json", path)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    records = _records("mcp-memory", path)
    assert [(r["text"], r["tags"]) for r in records] == [
        ("Prefers tea over coffee", ["entity:Ada", "type:person"]),
        ("Works on the billing service", ["entity:Ada", "type:person"]),
        ("Runs on Postgres 16", ["entity:billing-service", "type:project"]),
        ("Ada maintains billing-service", ["entity:Ada", "entity:billing-service", "relation"]),
    ]
    # No times in the file: its modification time, the same on every import.
    assert {r["ts"] for r in records} == {"2023-11-14T22:13:20+00:00"}


def test_mcp_memory_service_keeps_text_tags_type_and_times():
    records = _records("mcp-memory-service", DATA / "mcp-memory-service.json")
    assert [r["text"] for r in records] == ["We chose SQLite-vec as the storage backend.", "Deploys happen on Tuesdays."]
    assert records[0]["tags"] == ["architecture", "decision", "type:decision"]
    assert records[1]["tags"] == ["process", "deploy", "type:note"]
    assert records[0]["ts"] == "2024-03-01T10:00:00+00:00" and records[0]["updated_at"] == "2024-03-01T11:00:00+00:00"


def test_basic_memory_one_memory_per_note_tags_from_frontmatter():
    records = _records("basic-memory", DATA / "basic-memory")
    assert len(records) == 2  # the note under .obsidian/ is not one of the user's notes
    coffee, tea = records
    assert coffee["text"].startswith("# Coffee Brewing Methods\n\n## Observations\n- [method] Pour over")
    assert coffee["tags"] == ["coffee", "brewing"] and coffee["ts"] == "2025-01-10T08:30:00+00:00"
    assert tea["text"] == "Sencha steeps at 70 degrees for one minute."
    assert tea["tags"] == ["tea", "green"]
    # Path and text (issue 11 review): an edited note is new, a touched one is not.
    digest = hashlib.sha256(tea["text"].encode("utf-8")).hexdigest()
    assert tea["id"] == f"basic-memory:notes/tea-notes.md:{digest}"


def test_chatgpt_one_memory_per_message_of_the_visible_thread_with_roles_and_times():
    records = _records("chatgpt", DATA / "chatgpt" / "conversations.json")
    assert [(r["role"], r["text"]) for r in records] == [
        ("user", "I fly to Lisbon on May 3rd."),
        ("assistant", "Great, Lisbon is lovely in May."),
        ("user", "Book a window seat."),
    ]  # hidden system prompt, tool output and the edited-away branch are left out
    assert {r["session_id"] for r in records} == {"6a1e2f9c-0000-4000-8000-000000000001"}
    assert records[0]["ts"] == "2024-03-09T16:00:10.250000+00:00"


def test_claude_ai_one_memory_per_message_with_roles_and_times():
    records = _records("claude-ai", DATA / "claude-ai" / "conversations.json")
    assert [(r["role"], r["text"]) for r in records] == [
        ("user", "My tomatoes need water every second day."),
        ("assistant", "Noted: every second day."),
    ]  # the attachment-only message has no words to keep
    assert {r["session_id"] for r in records} == {"0b5c8d7e-1111-4222-8333-444455556666"}
    assert records[1]["ts"] == "2025-04-02T09:00:20+00:00"


@pytest.mark.parametrize("fmt, name, content, says", [
    ("mcp-memory", "memory.json", '{"type":"entity","name":"A","entityType":"t","observations":["x"]}\n'
     '{"type":"entity","name":"B","entityType":"t","observations":"not a list"}\n', "line 2: 'observations' must be list"),
    ("mcp-memory", "memory.json", '{"type":"entity","name":"A","entityType":"t","observations":["x"]}\n{"type":"mystery"}\n',
     "line 2: unknown type 'mystery'"),
    ("mcp-memory", "memory.json", '{"type":"entity"\n', "line 1: not JSON"),
    ("mcp-memory-service", "export.json", '{"memories": [{"content": "ok"}, {"content": 7}]}', "memories[1]: 'content' must be str"),
    ("chatgpt", "conversations.json", '[{"id": "c", "mapping": {}}, {"id": "d"}]', "conversation 1: 'mapping' must be dict"),
    ("claude-ai", "conversations.json", '[{"uuid": "u", "chat_messages": [{"sender": "robot", "text": "hi"}]}]',
     "conversation 0 (u), message 0: unknown sender 'robot'"),
    ("claude-ai", "conversations.json", '{"not": "a list"}', "expected a list of conversations"),
    ("chatgpt", "conversations.json", '[\n  {"id": "c",\n   "mapping": {]\n}', "line 3: not JSON"),
    ("claude-ai", "conversations.json", '[\n{"uuid": "a", "chat_messages": []},\n{"uuid": "b", "chat_messages": []},\n'
     '{"uuid": "c", "chat_messages": [{"sender": "human", "text": 3.5}, {"sender": "alien"}]}\n]',
     "line 4, conversation 2 (c), message 1: unknown sender 'alien'"),
    ("chatgpt", "conversations.json", '[{"id": "c", "mapping": {}}] trailing', "line 1: not JSON (extra data"),
    ("claude-ai", "conversations.json", "[" * 50_000 + "]" * 50_000, "nested too deeply"),
])
def test_damaged_input_is_an_error_naming_where(tmp_path, fmt, name, content, says):
    path = tmp_path / name
    path.write_text(content, "utf-8")
    with pytest.raises(InvalidInput) as info:
        _records(fmt, path)
    assert says in str(info.value) and "nothing was imported" in str(info.value)


def test_basic_memory_bad_frontmatter_names_the_file_and_line(tmp_path):
    (tmp_path / "ok.md").write_text("---\ntitle: fine\n---\nbody\n")
    (tmp_path / "bad.md").write_text("---\ntitle: x\ntags: [unclosed\n---\nbody\n")
    with pytest.raises(InvalidInput) as info:
        _records("basic-memory", tmp_path)
    assert "bad.md, line" in str(info.value) and "not valid YAML" in str(info.value)


def test_a_record_the_contract_refuses_names_its_line(tmp_path):
    path = tmp_path / "memory.json"
    path.write_text('{"type":"entity","name":"A","entityType":"t","observations":["fine", "   "]}\n')
    with pytest.raises(InvalidInput) as info:
        _records("mcp-memory", path)
    assert "line 1, observations[1]" in str(info.value) and "'text' must not be empty" in str(info.value)


FIXTURES = [("mcp-memory", DATA / "memory.json", 4), ("mcp-memory-service", DATA / "mcp-memory-service.json", 2),
            ("basic-memory", DATA / "basic-memory", 2), ("chatgpt", DATA / "chatgpt" / "conversations.json", 3),
            ("claude-ai", DATA / "claude-ai" / "conversations.json", 2)]


@pytest.mark.parametrize("fmt, path, count", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_cli_import_from_each_format_then_again_changes_nothing(cli, fmt, path, count):
    code, out, err = cli("import", "--from", fmt, str(path), "--dry-run")
    assert code == 0 and out.startswith(f"would import {count} memories") and not cli.store.exists()
    code, out, err = cli("import", "--from", fmt, str(path), "--json")
    assert code == 0 and json.loads(out)["inserted"] == count, err
    listed = json.loads(cli("list", "--json", "--limit", "100")[1])["items"]
    assert len(listed) == count
    # The same file again (a resumed import): everything is already there.
    again = json.loads(cli("import", "--from", fmt, str(path), "--json")[1])
    assert again["inserted"] == 0 and again["skipped"] == count


def test_cli_import_of_a_damaged_file_imports_nothing(cli, tmp_path):
    cli("init")
    path = tmp_path / "conversations.json"
    good = json.loads((DATA / "claude-ai" / "conversations.json").read_text())
    path.write_text(json.dumps([*good, {"uuid": "v", "chat_messages": [{"sender": "human", "text": "x"}, 5]}]))
    code, out, err = cli("import", "--from", "claude-ai", str(path))
    assert code == 1 and "conversation 1 (v), message 1" in err and len(err.splitlines()) == 1
    assert json.loads(cli("stats", "--json")[1])["records"] == 0


def test_progress_shows_on_a_terminal_only(cli, monkeypatch):
    import sys

    path = DATA / "chatgpt" / "conversations.json"
    code, _, err = cli("import", "--from", "chatgpt", str(path), "--dry-run")
    assert code == 0 and err == ""  # not a terminal: no progress bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = cli("import", "--from", "chatgpt", str(path))
    assert code == 0 and "importing:" in err and "/3 " in err  # a bar over the 3 memories


def test_a_text_said_twice_is_one_memory_and_a_second_import_changes_nothing(cli, tmp_path):
    def chat(cid, t, text):
        return {"uuid": cid, "chat_messages": [
            {"uuid": f"{cid}-1", "sender": "human", "text": text, "created_at": t},
            {"uuid": f"{cid}-2", "sender": "assistant", "text": f"reply in {cid}", "created_at": t}]}

    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([chat("a", "2025-01-01T00:00:00Z", "ok, go on"),
                                chat("b", "2025-01-02T00:00:00Z", "ok, go on")]))
    first = json.loads(cli("import", "--from", "claude-ai", str(path), "--json")[1])
    assert (first["records"], first["inserted"]) == (3, 3)
    again = json.loads(cli("import", "--from", "claude-ai", str(path), "--json")[1])
    assert (again["inserted"], again["reinforced"], again["skipped"]) == (0, 0, 3)
    items = json.loads(cli("list", "--json")[1])["items"]
    assert [i["reinforcements"] for i in items if i["literal_surface"] == "ok, go on"] == [1]
