"""A second host end to end (issue 11): OpenAI Codex CLI. Its hooks file
(~/.codex/hooks.json), its Stop and SessionStart hooks, and its rollout
transcripts (~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from iai_mcp import hooks
from iai_mcp.store import MemoryStore
from tests.test_server import DirectBackend

SESSIONS = Path(__file__).parent / "data" / "transcripts" / "codex" / "sessions"
(ROLLOUT,) = SESSIONS.rglob("rollout-*.jsonl")
SESSION = "5973b6c0-94b8-487b-a530-2aeb6098ae0e"
SAID = [
    ("user", "Our CI runs on Python 3.12, keep that in mind.", "2025-09-10T08:00:12.011Z"),
    ("assistant", "Confirmed: ci.yml pins Python 3.12, so I will avoid 3.13-only syntax.", "2025-09-10T08:00:18.000Z"),
]
#: A user's own hooks.json, in their own formatting (4 spaces, no final newline).
USER_HOOKS = ('{\n    "hooks": {\n        "PreToolUse": [\n            {"matcher": "Bash", "hooks": '
              '[{"type": "command", "command": "python3 ~/.codex/guard.py"}]}\n        ]\n    }\n}')


def test_the_rollout_parser_keeps_what_the_person_typed_and_the_agent_answered():
    """Not the AGENTS.md and environment context Codex sends as "user"
    messages, nor reasoning, tool calls, their output or token counts; and
    each message once, though it is in both of the rollout's logs."""
    turns, end = hooks.read_turns(ROLLOUT, 0, "codex")
    assert [(t.role, t.text, t.ts) for t in turns] == SAID
    assert end == ROLLOUT.stat().st_size
    assert hooks.HOSTS["codex"].session_of(ROLLOUT) == SESSION


def _hooks_file(home: Path) -> Path:
    return home / ".codex" / "hooks.json"


def test_install_then_uninstall_restores_the_hooks_file_byte_for_byte(cli, _isolate_home):
    path = _hooks_file(_isolate_home)
    path.parent.mkdir(parents=True)
    path.write_text(USER_HOOKS)
    code, _, err = cli("hooks", "install", "--host", "codex")
    assert code == 0 and "installed Codex CLI hooks" in err
    settings = json.loads(path.read_text())
    assert settings["hooks"]["PreToolUse"] == json.loads(USER_HOOKS)["hooks"]["PreToolUse"]
    expected = hooks.hook_commands(hooks.executable(), str(cli.store), "codex")
    assert expected["Stop"].endswith(f"--store {cli.store} hook --host codex stop")
    # Codex documents "timeout" (seconds) and no background option.
    assert settings["hooks"]["SessionStart"] == [{"matcher": "", "hooks": [
        {"type": "command", "command": expected["SessionStart"], "timeout": 30}]}]
    assert settings["hooks"]["Stop"] == [{"matcher": "", "hooks": [
        {"type": "command", "command": expected["Stop"], "timeout": 120}]}]
    assert not (_isolate_home / ".claude").exists()  # the other host is left alone

    assert cli("hooks", "uninstall", "--host", "codex")[0] == 0
    assert path.read_text() == USER_HOOKS


def test_uninstall_keeps_changes_the_user_made_since(cli, _isolate_home):
    """The original bytes come back only when they still say what the file
    says without our hooks; otherwise the user's later edit is kept."""
    path = _hooks_file(_isolate_home)
    path.parent.mkdir(parents=True)
    path.write_text(USER_HOOKS)
    cli("hooks", "install", "--host", "codex")
    settings = json.loads(path.read_text())
    settings["model"] = "gpt-5-codex"
    path.write_text(json.dumps(settings))
    cli("hooks", "uninstall", "--host", "codex")
    assert json.loads(path.read_text()) == {**json.loads(USER_HOOKS), "model": "gpt-5-codex"}


def test_codex_capture_pack_and_backfill(cli, _isolate_home):
    rollout = _isolate_home / ".codex" / "sessions" / ROLLOUT.relative_to(SESSIONS)
    rollout.parent.mkdir(parents=True)
    shutil.copy(ROLLOUT, rollout)
    # The Stop hook's input, as Codex documents it.
    payload = {"session_id": SESSION, "transcript_path": str(rollout), "cwd": "/home/dev/app",
               "hook_event_name": "Stop", "model": "gpt-5-codex", "turn_id": "turn-1",
               "stop_hook_active": False, "last_assistant_message": SAID[1][1]}
    code, out, err = cli("hook", "--host", "codex", "stop", "--json", stdin=json.dumps(payload))
    assert code == 0, err
    assert json.loads(out) == {"turns": 2, "inserted": 2, "reinforced": 0, "skipped": 0}
    with MemoryStore(path=cli.store) as store:
        rows = sorted((r.role, r.literal_surface, r.session_id, tuple(r.tags)) for r in store.rows())
    assert rows == sorted((role, text, SESSION, ("codex",)) for role, text, _ in SAID)

    # SessionStart: the pack goes back as hookSpecificOutput.additionalContext.
    start = {"session_id": "new", "transcript_path": None, "cwd": "/home/dev/app", "hook_event_name": "SessionStart",
             "model": "gpt-5-codex", "permission_mode": "default", "source": "startup"}
    code, out, _ = cli("hook", "--host", "codex", "session-start", stdin=json.dumps(start))
    context = json.loads(out)["hookSpecificOutput"]
    assert context["hookEventName"] == "SessionStart"
    assert SAID[0][1] in context["additionalContext"] and SAID[1][1] in context["additionalContext"]

    # A backfill of ~/.codex/sessions sees the hook's cursor: nothing new.
    code, out, _ = cli("import-transcripts", "--host", "codex", "--json")
    assert json.loads(out) == {"transcripts": 1, "turns": 0, "inserted": 0, "reinforced": 0, "skipped": 0}


def test_codex_home_moves_everything(cli, tmp_path, monkeypatch):
    home = tmp_path / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(home))
    assert hooks.HOSTS["codex"].config_path() == home / "hooks.json"
    assert cli("hooks", "install", "--host", "codex")[0] == 0
    assert set(json.loads((home / "hooks.json").read_text())["hooks"]) == {"SessionStart", "Stop"}


INJECTED = next((SESSIONS.parent / "injected").glob("rollout-*.jsonl"))


def test_context_codex_injects_is_not_taken_for_the_persons_words():
    """user_message events that mirror the AGENTS.md / user instructions and
    the environment context Codex adds (``kind`` not ``plain``, or, without a
    kind, text wrapped whole in ``<environment_context>``/``<user_instructions>``)
    are not captured; a message that only mentions the tag is."""
    turns, _ = hooks.read_turns(INJECTED, 0, "codex")
    assert [(t.role, t.text) for t in turns] == [
        ("user", "The API rate limit is 600 requests per minute."),
        ("assistant", "Noted: the limiter allows 600 requests per minute."),
        ("user", "Why does <environment_context> show up in the logs?"),
        ("assistant", "Codex sends it to the model with every turn."),
    ]


def test_a_stop_without_a_rollout_captures_nothing_and_is_no_failure(cli):
    """Codex documents ``transcript_path`` as nullable (a session it keeps
    no rollout of): zero new turns, a successful run in status."""
    cli("capture", "x")
    payload = {"session_id": "s", "transcript_path": None, "hook_event_name": "Stop"}
    code, out, err = cli("hook", "--host", "codex", "stop", "--json", stdin=json.dumps(payload))
    assert code == 0, err
    assert json.loads(out) == {"turns": 0, "inserted": 0, "reinforced": 0, "skipped": 0}
    from iai_mcp.hooks import cursors

    stop = cursors.last_runs(cli.store / hooks.STATE_DIR, "codex")["stop"]
    assert stop["turns"] == 0 and "failed_at" not in stop
    # No transcript_path at all is still a hook wired to the wrong event.
    code, _, err = cli("hook", "--host", "codex", "stop", stdin=json.dumps({"session_id": "s"}))
    assert code == 1 and "no 'transcript_path'" in err


def test_a_codex_backfill_takes_the_project_from_the_rollouts_session_meta(tmp_path):
    """A rollout records its cwd once, in its first (session_meta) line; with no
    hook input to name it, a backfill's turns get that directory's project."""
    from iai_mcp.hooks.hosts import HOSTS

    assert HOSTS["codex"].cwd_of(ROLLOUT) == "/home/dev/app"
    assert HOSTS["claude-code"].cwd_of(ROLLOUT) is None  # its turns carry their own cwd
    with MemoryStore(path=tmp_path / "s") as store:
        from iai_mcp.embed import HashEmbedder

        store.bind_embedder(HashEmbedder())
        counts = hooks.capture_transcripts(DirectBackend(store), HOSTS["codex"], [(ROLLOUT, SESSION)], tmp_path / "state")
        assert counts["inserted"] == 2
        assert {row.project for row in store.rows()} == {"/home/dev/app"}
