"""A CLI to trust (issue 11): read-only commands never create a store, human
output has no Python reprs and the right plurals, every command takes
--json, recall --preview N."""
from __future__ import annotations

import json
import re

import pytest

from iai_mcp.cli import build_parser

READ_ONLY = [["recall", "anything"], ["show", "00000000-0000-4000-8000-000000000000"], ["list"], ["stats"],
             ["export", "--plaintext"], ["tags"], ["compact"],
             ["forget", "--id", "00000000-0000-4000-8000-000000000000"],
             ["pin", "00000000-0000-4000-8000-000000000000"]]


@pytest.mark.parametrize("local", [True, False], ids=["local", "daemon"])
@pytest.mark.parametrize("argv", READ_ONLY, ids=[a[0] for a in READ_ONLY])
def test_a_command_on_a_path_with_no_store_says_so_and_creates_nothing(cli, tmp_path, monkeypatch, argv, local):
    if not local:
        monkeypatch.delenv("IAI_MCP_LOCAL")
    missing = tmp_path / "typo"
    code, out, err = cli("--store", str(missing), *argv)
    assert code == 1 and out == ""
    assert f"no memory store at {missing}" in err and len(err.splitlines()) == 1
    assert not missing.exists()  # no folder, so no key and no daemon either
    assert not list(tmp_path.rglob("daemon.json"))


def test_init_creates_an_empty_store_and_says_so_once(cli):
    code, out, _ = cli("init")
    assert code == 0 and out.startswith("created an empty store at ") and (cli.store / "meta.json").is_file()
    code, out, _ = cli("init", "--json")
    assert code == 0 and json.loads(out)["created"] is False
    assert cli("list")[0] == 0


def test_capture_and_import_create_a_store(cli, tmp_path):
    assert cli("--store", str(tmp_path / "a"), "capture", "hello")[0] == 0
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"text": "imported"}) + "\n")
    assert cli("--store", str(tmp_path / "b"), "import", str(path))[0] == 0
    assert (tmp_path / "a" / "meta.json").is_file() and (tmp_path / "b" / "meta.json").is_file()


def test_the_store_marker_is_the_store_meta_file():
    from iai_mcp import backend
    from iai_mcp.store import META_FILE

    assert backend.STORE_MARKER == META_FILE


REPR = re.compile(r"\bNone\b|\[\s*'|'\s*\]|=\d{9,}\.\d+|\b1 memories\b|\b1 records\b")


def _busy(cli):
    cli("capture", "the deploy runs on Tuesdays", "--tag", "ops", "--tag", "deploy", "--session-id", "s1")
    rid = json.loads(cli("capture", "one more thing to remember about the deploy and its schedule",
                         "--json")[1])["record_id"]
    cli("recall", "deploy")
    return rid


def test_human_output_has_no_python_reprs(cli):
    rid = _busy(cli)
    outputs = {}
    for argv in (["show", rid], ["list"], ["recall", "deploy"], ["stats"], ["tags"], ["init"],
                 ["forget", "--id", rid, "--dry-run"], ["daemon", "status"]):
        code, out, err = cli(*argv)
        assert code == 0, (argv, err)
        outputs[argv[0]] = out
        assert not REPR.search(out + err), (argv, out, err)
    # Times a person reads are ISO, in local time; lists are joined.
    assert re.search(r"^said: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", outputs["show"], re.M)
    assert "role:" not in outputs["show"]  # unknown: left out, not "role: None"


def test_plurals(cli):
    rid = json.loads(cli("capture", "only one", "--json")[1])["record_id"]
    out = cli("forget", "--id", rid, "--dry-run")[1]
    assert out.startswith("would forget 1 of 1 matching memory\n")
    assert "1 fragment\n" in cli("stats")[1]
    path = cli.store.parent / "one.jsonl"
    path.write_text(json.dumps({"text": "another"}) + "\n")
    out = cli("import", str(path))[1]
    assert out.startswith("imported 1 record:")
    err = cli("export", "--plaintext", "-o", str(cli.store.parent / "e.jsonl"))[2]
    assert "wrote 2 memories" in err


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_takes_json(name):
    if name == "serve":  # stdout is JSON-RPC already
        return
    options = {opt for action in _commands()[name]._actions for opt in action.option_strings}
    if name == "hook":
        assert "--json" in options
        return
    assert "--json" in options, name


def test_recall_preview_prints_each_hit_on_one_line(cli):
    cli("capture", "first line of a long memory\nsecond line that should not be shown at all")
    cli("capture", "short memory about lines")
    code, out, _ = cli("recall", "memory lines", "--preview", "20")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert any(line.endswith("first line of a lon…") for line in lines)
    assert all("second line" not in line for line in lines)
    assert json.loads(cli("recall", "memory lines", "--preview", "20", "--json")[1])["hits"]


def test_hooks_json_says_what_it_would_change(cli, tmp_path):
    settings = tmp_path / "settings.json"
    code, out, _ = cli("hooks", "install", "--settings", str(settings), "--dry-run", "--json")
    result = json.loads(out)
    assert code == 0 and result["changed"] is True and result["dry_run"] is True
    assert "hooks" in result["settings"] and not settings.exists()


def test_values_are_rendered_for_people():
    from datetime import datetime

    from iai_mcp.cli.format import human, when

    local = datetime.fromtimestamp(1795961687.75).astimezone().isoformat(sep=" ", timespec="seconds")
    assert human("started_at", 1795961687.75) == local  # not started_at=1795961687.75
    assert when("2026-12-05T09:55:00.609954+00:00").startswith(
        datetime.fromisoformat("2026-12-05T09:55:00+00:00").astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    assert human("tags", ["a", "b"]) == "a, b" and human("pinned", False) == "no"
    assert human("key", {"kind": "file", "name": None}) == "kind=file"


def test_export_json_reports_what_it_wrote(cli, tmp_path):
    cli("capture", "one")
    target = tmp_path / "out.jsonl"
    code, out, err = cli("export", "--plaintext", "-o", str(target), "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {"written": 1, "output": str(target), "plaintext": True, "provenance_damaged": 0}
