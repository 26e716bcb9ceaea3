"""Review findings on import (issue 11): a round trip keeps memories that
share a text, foreign files touched since the last import are skipped,
deep YAML is a clear error, a failed batch says how to resume, and
mcp-memory-service errors name a line."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from iai_mcp import importers
from iai_mcp.errors import InvalidInput, StoreError

DATA = Path(__file__).parent / "data" / "importers"


def _json(cli, *argv):
    code, out, err = cli(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_two_active_memories_with_one_text_both_survive_a_round_trip(cli, tmp_path):
    # Forget one, say it again, restore the first: two active memories, one text.
    first = _json(cli, "capture", "the deploy key lives in vault")["record_id"]
    cli("forget", "--id", first)
    second = _json(cli, "capture", "the deploy key lives in vault")["record_id"]
    assert second != first
    assert cli("restore", first)[0] == 0
    dump = tmp_path / "dump.jsonl"
    assert cli("export", "--plaintext", "-o", str(dump))[0] == 0
    assert len(dump.read_text().splitlines()) == 2

    other = str(tmp_path / "other")
    result = _json(cli, "--store", other, "import", str(dump))
    assert (result["inserted"], result["reinforced"], result["skipped"]) == (2, 0, 0)
    for rid in (first, second):
        code, out, _ = cli("--store", other, "show", rid, "--json")
        assert code == 0 and json.loads(out)["state"] == "active"
    # Imported again: both are there, by id, nothing changes.
    again = _json(cli, "--store", other, "import", str(dump))
    assert (again["inserted"], again["reinforced"], again["skipped"]) == (0, 0, 2)


@pytest.mark.parametrize("fmt, source", [
    ("mcp-memory", DATA / "memory.json"),
    ("basic-memory", DATA / "basic-memory"),
])
def test_a_foreign_file_touched_since_its_import_is_skipped_not_reinforced(cli, tmp_path, fmt, source):
    # The memory server rewrites memory.json on every change; a note's file is
    # touched by editors: its mtime moves, its records do not.
    path = tmp_path / source.name
    (shutil.copytree if source.is_dir() else shutil.copy)(source, path)
    first = _json(cli, "import", "--from", fmt, str(path))
    assert first["inserted"] == first["records"] > 0
    for file in [path, *path.rglob("*.md")]:
        os.utime(file, (2_000_000_000, 2_000_000_000))
    again = _json(cli, "import", "--from", fmt, str(path))
    assert (again["inserted"], again["reinforced"], again["skipped"]) == (0, 0, first["records"])
    items = _json(cli, "list", "--limit", "100")["items"]
    assert [i["reinforcements"] for i in items] == [0] * first["records"]


def test_a_basic_memory_note_changed_since_its_import_is_a_new_memory(cli, tmp_path):
    (tmp_path / "n.md").write_text("---\ntitle: t\n---\nfirst words\n")
    assert _json(cli, "import", "--from", "basic-memory", str(tmp_path))["inserted"] == 1
    (tmp_path / "n.md").write_text("---\ntitle: t\n---\nsecond words\n")
    assert _json(cli, "import", "--from", "basic-memory", str(tmp_path))["inserted"] == 1


def test_basic_memory_deeply_nested_frontmatter_is_invalid_input_naming_the_note(tmp_path):
    (tmp_path / "fine.md").write_text("---\ntitle: fine\n---\nbody\n")
    (tmp_path / "deep.md").write_text("---\ntitle: x\nmeta: " + "[" * 5000 + "]" * 5000 + "\n---\nbody\n")
    with pytest.raises(InvalidInput) as info:
        importers.read("basic-memory", tmp_path)
    assert "deep.md" in str(info.value) and "nested too deeply" in str(info.value)


def test_mcp_memory_service_error_names_the_line_the_memory_starts_on(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('{"export_metadata": {"memories": []},\n "memories": [\n  {"content": "ok"},\n'
                    '  {"content": "fine",\n   "tags": ["a"]},\n  {"content": 7}\n ]\n}\n')
    with pytest.raises(InvalidInput) as info:
        importers.read("mcp-memory-service", path)
    assert f"{path}, line 6, memories[2]: 'content' must be str" in str(info.value)


def test_a_batch_that_fails_midway_says_how_many_went_in_and_how_to_resume(cli, tmp_path, monkeypatch):
    from iai_mcp.backend import LocalBackend

    path = tmp_path / "dump.jsonl"
    path.write_text("".join(json.dumps({"id": f"m{i}", "text": f"memory number {i}"}) + "\n" for i in range(5)))
    real = LocalBackend.call
    calls = []

    def failing(self, method, params=None):
        if method == "memory_import" and not (params or {}).get("dry_run"):
            calls.append(len(params["records"]))
            if len(calls) == 3:
                raise StoreError("the disk is full")
        return real(self, method, params)

    monkeypatch.setattr(LocalBackend, "call", failing)
    code, _, err = cli("import", str(path), "--batch-size", "2")
    assert code == 1 and len(err.splitlines()) == 1
    assert "the disk is full" in err and "4 of 5 records imported" in err
    assert "run the same command again to resume" in err
    monkeypatch.setattr(LocalBackend, "call", real)
    resumed = _json(cli, "import", str(path), "--batch-size", "2")
    assert (resumed["inserted"], resumed["skipped"]) == (1, 4)
