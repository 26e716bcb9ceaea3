"""Claude Code hooks: settings merge round trip, the Stop hook against a
sample transcript (each turn once), and the SessionStart pack."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from iai_mcp import hooks
from iai_mcp.core.recall import estimate_tokens
from iai_mcp.core.session_pack import HEADER
from iai_mcp.store import MemoryStore

SAMPLE = Path(__file__).parent / "data" / "sample_transcript.jsonl"
SESSION = "5f0c6a9e-2b7d-4c1a-9f3e-8d2b1a7c4e60"
TURNS = [
    ("user", "I prefer tabs over spaces in Python files, please remember that.", "2025-05-08T13:56:00.000Z"),
    ("assistant", "Noted: tabs over spaces for your Python files.", "2025-05-08T13:56:04.120Z"),
    ("assistant", "app.py defines one function, main().\n\nShall I convert it to tabs?", "2025-05-08T13:56:09.000Z"),
    ("user", "yes", "2025-05-08T13:56:20.000Z"),
    ("assistant", "Done: app.py now uses tabs.\nRun the tests to be sure.", "2025-05-08T13:56:25.000Z"),
    ("user", "yes", "2025-05-08T13:57:00.000Z"),
    ("assistant", "All 12 tests pass.", "2025-05-08T13:57:30.000Z"),
]
USER_SETTINGS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)"]},
    "hooks": {
        "Stop": [{"matcher": "", "hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}],
    },
}


def _rows(store_path: Path):
    with MemoryStore(path=store_path) as store:
        return [(r.role, r.literal_surface, r.session_id, r.reinforcements) for r in store.rows()]


# ------------------------------------------------------------------ settings


def _settings_file(home: Path, data=USER_SETTINGS) -> Path:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def test_install_merges_and_uninstall_restores_exactly(cli, _isolate_home):
    path = _settings_file(_isolate_home)
    original = path.read_bytes()
    code, _, err = cli("hooks", "install", "--host", "claude-code")
    assert code == 0 and "installed Claude Code hooks" in err
    settings = json.loads(path.read_text())
    assert {k: v for k, v in settings.items() if k != "hooks"} == {"model": "opus", "permissions": {"allow": ["Bash(ls:*)"]}}
    assert settings["hooks"]["PreToolUse"] == USER_SETTINGS["hooks"]["PreToolUse"]
    assert settings["hooks"]["Stop"][0] == USER_SETTINGS["hooks"]["Stop"][0]
    ours = {event: groups[-1] for event, groups in settings["hooks"].items() if event in hooks.EVENTS}
    assert ours["SessionStart"]["matcher"] == "" and ours["Stop"]["matcher"] == ""
    # IAI_MCP_STORE is set, so the hooks are pinned to that store.
    expected = hooks.hook_commands(hooks.executable(), str(cli.store))
    assert expected["Stop"].endswith(f"iai-mcp --store {cli.store} hook stop")
    # A time limit on each (a cold daemon cannot stall the session), and Stop
    # in the background (Claude Code's "async"), so no turn waits for capture.
    assert ours["SessionStart"]["hooks"] == [{"type": "command", "command": expected["SessionStart"], "timeout": 30}]
    assert ours["Stop"]["hooks"] == [{"type": "command", "command": expected["Stop"], "timeout": 120, "async": True}]
    backups = list(path.parent.glob("settings.json.iai-mcp-backup-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original

    installed = path.read_bytes()
    code, _, err = cli("hooks", "install")
    assert code == 0 and "nothing to change" in err
    assert path.read_bytes() == installed
    assert len(list(path.parent.glob("settings.json.iai-mcp-backup-*"))) == 1

    code, _, err = cli("hooks", "uninstall")
    assert code == 0 and "uninstalled" in err
    assert path.read_bytes() == original
    assert cli("hooks", "uninstall")[2].endswith(f"nothing to change in {path}\n")


def test_install_creates_settings_and_uninstall_leaves_no_trace_of_ours(cli, _isolate_home, monkeypatch):
    """No file before install: uninstall deletes the one install made (and
    the backup a reinstall made of it), leaving the folder as it was."""
    path = _isolate_home / ".claude" / "settings.json"
    assert cli("hooks", "install")[0] == 0
    assert set(json.loads(path.read_text())["hooks"]) == {"SessionStart", "Stop"}
    assert not list(path.parent.glob("*backup*"))  # nothing to back up
    monkeypatch.setenv("IAI_MCP_STORE", str(_isolate_home / "other-store"))
    assert cli("hooks", "install")[0] == 0  # updates the commands: a backup of our own file
    assert len(list(path.parent.glob("*backup*"))) == 1
    assert cli("hooks", "uninstall")[0] == 0
    assert sorted(path.parent.iterdir()) == []


@pytest.mark.parametrize("original", [
    '{"model":"opus",\n\t"hooks":{}}',
    '{ "hooks" : { "Stop" : [ ] ,\n  "SessionStart": [],"PreToolUse": [] } }\n\n',
    '{"hooks": {}}',
], ids=["empty-hooks", "empty-events", "only-empty-hooks"])
def test_uninstall_keeps_the_users_own_empty_containers_byte_for_byte(cli, _isolate_home, original):
    path = _isolate_home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(original)
    assert cli("hooks", "install")[0] == 0
    assert cli("hooks", "uninstall")[0] == 0
    assert path.read_text() == original


def test_settings_are_replaced_atomically_keeping_the_users_mode(cli, _isolate_home):
    """Written through fs.write_atomic: the user's file keeps its mode, a new
    one is owner-only (settings may hold secrets in "env"), no temp is left."""
    path = _settings_file(_isolate_home)
    path.chmod(0o640)
    assert cli("hooks", "install")[0] == 0
    assert path.stat().st_mode & 0o777 == 0o640
    path.unlink()
    assert cli("hooks", "install")[0] == 0
    assert path.stat().st_mode & 0o777 == hooks.NEW_SETTINGS_MODE == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith("tmp")] == []


def test_uninstall_keeps_other_hooks_in_a_shared_group(cli, _isolate_home):
    command = hooks.hook_commands(hooks.executable())["Stop"]
    shared = {"hooks": {"Stop": [{"matcher": "", "hooks": [
        {"type": "command", "command": "notify-send done"},
        {"type": "command", "command": command},
    ]}]}}
    path = _settings_file(_isolate_home, shared)
    assert cli("hooks", "uninstall")[0] == 0
    assert json.loads(path.read_text()) == {"hooks": {"Stop": [{"matcher": "", "hooks": [
        {"type": "command", "command": "notify-send done"}]}]}}


def test_dry_run_changes_nothing(cli, _isolate_home):
    path = _settings_file(_isolate_home)
    original = path.read_bytes()
    code, out, err = cli("hooks", "install", "--dry-run")
    assert code == 0 and "was not changed" in err
    assert "SessionStart" in json.loads(out)["hooks"]
    assert path.read_bytes() == original and not list(path.parent.glob("*backup*"))


def test_broken_settings_are_refused_untouched(cli, _isolate_home):
    path = _isolate_home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    code, _, err = cli("hooks", "install")
    assert code == 1 and "is not valid JSON" in err and len(err.splitlines()) == 1
    assert path.read_text() == "{ not json"


def test_the_store_option_reaches_the_hook_commands(tmp_path):
    commands = hooks.hook_commands("/opt/bin/iai-mcp", "/data/my store")
    assert commands["Stop"] == "/opt/bin/iai-mcp --store '/data/my store' hook stop"
    assert hooks.is_ours(commands["Stop"], "Stop") and not hooks.is_ours(commands["Stop"], "SessionStart")
    assert not hooks.is_ours("my-iai-mcp-wrapper hook stop", "Stop")


# ---------------------------------------------------------------- transcript


def test_transcript_turns_are_the_text_of_user_and_assistant_messages():
    turns, end = hooks.read_turns(SAMPLE)
    assert [(t.role, t.text, t.ts) for t in turns] == TURNS
    assert end == SAMPLE.stat().st_size


def test_a_line_still_being_written_waits_for_the_next_run(tmp_path):
    path = tmp_path / "t.jsonl"
    line = json.dumps({"type": "user", "message": {"role": "user", "content": "hello"}, "timestamp": "2025-01-01T00:00:00Z"})
    path.write_text(line[:20])
    assert hooks.read_turns(path) == ([], 0)
    path.write_text(line + "\n")
    turns, end = hooks.read_turns(path)
    assert [t.text for t in turns] == ["hello"] and end == len(line) + 1


def _stop(cli, transcript: Path, session: str = SESSION):
    payload = {"session_id": session, "transcript_path": str(transcript), "hook_event_name": "Stop",
               "stop_hook_active": False, "cwd": "/home/dev/project"}
    code, out, err = cli("hook", "stop", "--json", stdin=json.dumps(payload))
    assert code == 0, err
    return json.loads(out)


def test_stop_hook_twice_captures_each_turn_once(cli, tmp_path):
    transcript = tmp_path / "session.jsonl"
    shutil.copy(SAMPLE, transcript)
    first = _stop(cli, transcript)
    assert first == {"turns": 7, "inserted": 6, "reinforced": 0, "skipped": 0}
    rows = _rows(cli.store)
    assert sorted((role, text) for role, text, *_ in rows) == sorted({(r, t) for r, t, _ in TURNS})
    assert {(session, reinforced) for *_, session, reinforced in rows} == {(SESSION, 0)}

    assert _stop(cli, transcript) == {"turns": 0, "inserted": 0, "reinforced": 0, "skipped": 0}
    (cursor,) = (cli.store / hooks.STATE_DIR).glob("cursor-*.json")  # replaced atomically, owner-only
    assert cursor.stat().st_mode & 0o777 == 0o600
    # Cursor lost: the whole transcript again is recognised turn by turn.
    shutil.rmtree(cli.store / hooks.STATE_DIR)
    assert _stop(cli, transcript) == {"turns": 7, "inserted": 0, "reinforced": 0, "skipped": 6}
    assert _rows(cli.store) == rows


def test_stop_hook_captures_only_new_turns(cli, tmp_path):
    transcript = tmp_path / "session.jsonl"
    shutil.copy(SAMPLE, transcript)
    _stop(cli, transcript)
    with transcript.open("a") as fh:
        for uuid, text, ts in [("u-9", "Please also remember my cat is called Miso.", "2025-05-08T14:00:00Z"),
                               ("u-10", "yes", "2025-05-08T14:00:30Z")]:
            fh.write(json.dumps({"type": "user", "uuid": uuid, "timestamp": ts,
                                 "message": {"role": "user", "content": text}}) + "\n")
    assert _stop(cli, transcript) == {"turns": 2, "inserted": 1, "reinforced": 1, "skipped": 0}
    rows = {text: reinforced for _, text, _, reinforced in _rows(cli.store)}
    assert rows["yes"] == 1 and rows["Please also remember my cat is called Miso."] == 0


def test_stop_hook_errors_are_one_line(cli, tmp_path):
    code, _, err = cli("hook", "stop", stdin="not json")
    assert code == 1 and err.startswith("iai-mcp: error: hook input is not JSON")
    code, _, err = cli("hook", "stop", stdin=json.dumps({"session_id": "s", "transcript_path": str(tmp_path / "nope")}))
    assert code == 1 and "does not exist" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------ session start


def test_session_start_prints_a_pack_within_budget(cli):
    for i in range(40):
        cli("capture", f"project note {i}: " + "detail " * 30, "--ts", f"2024-03-{i % 28 + 1:02d}T00:00:00Z")
    cli("capture", "Always answer in British English.", "--pinned")
    cli("recall", "project note 7", "--k", "1")
    payload = json.dumps({"session_id": "new-session", "source": "startup", "hook_event_name": "SessionStart"})
    code, out, _ = cli("hook", "session-start", "--budget-tokens", "500", stdin=payload)
    assert code == 0
    assert 0 < estimate_tokens(out) <= 500
    lines = out.splitlines()
    assert lines[0] == HEADER
    assert lines[1].startswith("- [pinned, said ") and lines[1].endswith("] Always answer in British English.")
    assert lines[2].startswith("- [recalled") and "project note 7:" in lines[2]
    assert len(lines) < 42  # the budget cut the pack short
    code, out, _ = cli("hook", "session-start", stdin=payload)  # default budget: 3,000
    assert estimate_tokens(out) <= 3000 and len(out.splitlines()) == 42


def test_session_start_on_an_empty_store_prints_nothing(cli):
    assert cli("hook", "session-start", stdin=json.dumps({"session_id": "x"})) == (0, "", "")



def test_stop_hook_batches_by_size_so_no_request_exceeds_the_wire_limit(tmp_path, monkeypatch):
    from iai_mcp.daemon import wire

    # 200 long turns in one batch would exceed this limit; the hook must split by bytes.
    monkeypatch.setattr(wire, "MAX_MESSAGE_BYTES", 1024 * 1024)
    transcript = tmp_path / "long.jsonl"
    with transcript.open("w") as fh:
        for i in range(150):
            fh.write(json.dumps({"type": "user", "timestamp": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                                 "message": {"role": "user", "content": f"{i} " + "é" * 20_000}}) + "\n")

    class Backend:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def call(self, method, params):
            if method == "keyed_digest":
                return {"digests": [str(abs(hash(v))) for v in params["values"]]}
            payload = wire.encode({"id": 1, "method": method, "params": params})
            if len(payload) > wire.MAX_MESSAGE_BYTES:
                raise wire.too_large(f"the {method} request", len(payload))
            self.sent += [r["text"] for r in params["records"]]
            return {"inserted": len(params["records"]), "reinforced": 0, "skipped": 0}

    backend = Backend()
    counts = hooks.capture_transcript(backend, {"session_id": SESSION, "transcript_path": str(transcript)},
                                      tmp_path / "state")
    assert counts == {"turns": 150, "inserted": 150, "reinforced": 0, "skipped": 0}
    assert [t.split(" ")[0] for t in backend.sent] == [str(i) for i in range(150)]
