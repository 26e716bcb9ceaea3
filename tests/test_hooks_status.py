"""``hooks status``: per host, checked rather than assumed (issue 11):
installed, the command it names runs, the store it writes to is reachable,
and when each hook last ran."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from iai_mcp import hooks
from iai_mcp.types import parse_time

SAMPLE = Path(__file__).parent / "data" / "sample_transcript.jsonl"


def _status(cli, *args: str) -> tuple[int, dict[str, dict]]:
    code, out, _ = cli("hooks", "status", "--json", *args)
    return code, {report["host"]: report for report in json.loads(out)}


def _write_hooks(path: Path, program: str, store: Path, host: str = "claude-code") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    hooks.install(path, hooks.hook_commands(program, str(store), host))


def test_nothing_installed_is_said_plainly(cli):
    code, reports = _status(cli)
    assert code == 0 and set(reports) == {"claude-code", "codex"}
    for report in reports.values():
        assert report["installed"] == {"SessionStart": False, "Stop": False}
        assert report["command_runs"] is None and report["store_reachable"] is None
    code, out, _ = cli("hooks", "status")
    assert out.splitlines()[0].startswith("claude-code: not installed (")
    assert out.splitlines()[1].startswith("codex: not installed (")


def test_a_hook_whose_command_is_gone_is_not_reported_as_working(cli, _isolate_home, tmp_path):
    _write_hooks(_isolate_home / ".claude" / "settings.json", str(tmp_path / "gone" / "iai-mcp"), tmp_path / "nostore")
    code, reports = _status(cli, "--host", "claude-code")
    assert code == 1 and list(reports) == ["claude-code"]
    report = reports["claude-code"]
    assert report["installed"] == {"SessionStart": True, "Stop": True}
    assert report["command_runs"] is False and "does not exist" in report["command_detail"]
    assert report["store_reachable"] is False and report["store_detail"] == f"no store at {tmp_path / 'nostore'}"
    code, out, _ = cli("hooks", "status", "--host", "claude-code")
    assert "  command: FAILS: " in out and "  store: UNREACHABLE: " in out


def _program(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bin" / "iai-mcp"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.slow  # runs the installed command
def test_status_runs_the_command_reaches_the_store_and_says_when_hooks_ran(cli, _isolate_home, tmp_path):
    cli("capture", "a first memory")
    program = _program(tmp_path, 'echo "iai-mcp 9.9 $*"')
    _write_hooks(_isolate_home / ".codex" / "hooks.json", program, cli.store, "codex")
    code, reports = _status(cli, "--host", "all")
    report = reports["codex"]
    assert code == 0 and reports["claude-code"]["installed"]["Stop"] is False
    # Run with the hook's own --store, asking only for the version.
    assert report["command_runs"] is True and report["command_detail"] == f"iai-mcp 9.9 --store {cli.store} --version"
    assert report["store_reachable"] is True and report["store_detail"] == "1 memories"
    assert report["last_run"] == {"session-start": None, "stop": None}

    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(SAMPLE.read_bytes())
    payload = json.dumps({"session_id": "s", "transcript_path": str(transcript)})
    assert cli("hook", "--host", "codex", "stop", stdin=payload)[0] == 0
    assert cli("hook", "--host", "codex", "session-start", stdin=payload)[0] == 0
    _, reports = _status(cli, "--host", "codex")
    stop, start = reports["codex"]["last_run"]["stop"], reports["codex"]["last_run"]["session-start"]
    assert parse_time(stop["at"]) is not None and parse_time(start["at"]) is not None
    assert stop["turns"] == 0  # the sample is a Claude Code transcript: nothing in it is Codex's
    _, out, _ = cli("hooks", "status", "--host", "codex")
    assert f"  stop: last ran {stop['at']}, 0 new of 0 turns" in out.splitlines()


@pytest.mark.slow  # runs the installed command
def test_a_command_that_fails_is_reported(cli, _isolate_home, tmp_path):
    cli("capture", "x")
    _write_hooks(_isolate_home / ".claude" / "settings.json", _program(tmp_path, "echo broken >&2; exit 3"), cli.store)
    code, reports = _status(cli, "--host", "claude-code")
    assert code == 1
    assert reports["claude-code"]["command_runs"] is False
    assert reports["claude-code"]["command_detail"].endswith("exited with status 3: broken")


@pytest.mark.slow  # starts the real iai-mcp
def test_the_installed_command_is_really_run(cli, _isolate_home):
    from iai_mcp import __version__

    cli("capture", "x")
    assert cli("hooks", "install")[0] == 0
    code, reports = _status(cli, "--host", "claude-code")
    report = reports["claude-code"]
    assert code == 0, report
    assert report["command_runs"] is True and report["command_detail"] == f"iai-mcp {__version__}"


def test_a_failed_hook_run_shows_in_status(cli, _isolate_home, tmp_path):
    """A background hook (Claude Code's async Stop) has nobody to tell but
    status: its last failure is kept beside its last success."""
    cli("capture", "x")
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(SAMPLE.read_bytes())
    assert cli("hook", "stop", stdin=json.dumps({"session_id": "s", "transcript_path": str(transcript)}))[0] == 0
    transcript.unlink()
    code, _, err = cli("hook", "stop", stdin=json.dumps({"session_id": "s", "transcript_path": str(transcript)}))
    assert code == 1 and "does not exist" in err
    _write_hooks(_isolate_home / ".claude" / "settings.json", str(tmp_path / "gone" / "iai-mcp"), cli.store)
    _, reports = _status(cli, "--host", "claude-code")
    stop = reports["claude-code"]["last_run"]["stop"]
    assert stop["turns"] == 7 and stop["error"] == f"InvalidInput: transcript {transcript} does not exist"
    assert parse_time(stop["failed_at"]) >= parse_time(stop["at"])
    _, out, _ = cli("hooks", "status", "--host", "claude-code")
    assert f"; FAILED {stop['failed_at']}: InvalidInput: transcript {transcript} does not exist" in out

    from iai_mcp.hooks.status import healthy

    working = {"config_error": None, "installed": {"SessionStart": True, "Stop": True},
               "command_runs": True, "store_reachable": True,
               "last_run": {"session-start": None, "stop": {"at": stop["at"]}}}
    assert healthy(working) and not healthy({**working, "last_run": {"stop": stop}})


def test_settings_name_one_host(cli, tmp_path):
    code, _, err = cli("hooks", "status", "--settings", str(tmp_path / "x.json"))
    assert code == 1 and "give one --host" in err


def test_reinstalling_gives_older_entries_their_timeouts(cli, _isolate_home):
    """Hooks installed by an earlier version (no timeout, not async) are
    brought up to date by running install again, in place."""
    path = _isolate_home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    commands = hooks.hook_commands(hooks.executable(), str(cli.store))
    path.write_text(json.dumps({"hooks": {event: [{"matcher": "", "hooks": [{"type": "command", "command": command}]}]
                                          for event, command in commands.items()}}))
    code, _, err = cli("hooks", "install")
    assert code == 0 and "Stop: updated the hook" in err
    settings = json.loads(path.read_text())["hooks"]
    assert settings["Stop"] == [{"matcher": "", "hooks": [
        {"type": "command", "command": commands["Stop"], "timeout": 120, "async": True}]}]
    assert settings["SessionStart"][0]["hooks"][0]["timeout"] == 30


def test_an_unreadable_hooks_file_is_not_reported_as_not_installed(cli, _isolate_home):
    path = _isolate_home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{ broken")
    code, reports = _status(cli, "--host", "claude-code")
    assert code == 1 and reports["claude-code"]["config_error"].startswith(f"{path} could not be read")
    assert cli("hooks", "status", "--host", "claude-code")[1].startswith("claude-code: UNREADABLE: ")


def test_codex_without_its_hooks_feature_says_so(cli, _isolate_home, tmp_path):
    _write_hooks(_isolate_home / ".codex" / "hooks.json", str(tmp_path / "gone" / "iai-mcp"), tmp_path, "codex")
    (_isolate_home / ".codex" / "config.toml").write_text('model = "gpt-5-codex"\n')
    _, reports = _status(cli, "--host", "codex")
    assert len(reports["codex"]["missing"]) == 1 and "codex_hooks = true" in reports["codex"]["missing"][0]
    (_isolate_home / ".codex" / "config.toml").write_text('model = "gpt-5-codex"\n[features]\ncodex_hooks = true\n')
    assert _status(cli, "--host", "codex")[1]["codex"]["missing"] == []


@pytest.mark.slow  # runs the installed command
def test_a_command_that_cannot_run_the_hook_as_installed_is_not_reported_as_working(cli, _isolate_home, tmp_path):
    """An install that answers --version but has no Codex hook (an older
    iai-mcp, say) would fail every hook: the probe runs the installed
    command line with --help, which argparse refuses there."""
    cli("capture", "x")
    program = _program(tmp_path, 'case "$*" in\n  *--version) echo "iai-mcp 0.1";;\n'
                                 '  *) echo "iai-mcp hook: error: unrecognized arguments: --host" >&2; exit 2;;\nesac')
    _write_hooks(_isolate_home / ".codex" / "hooks.json", program, cli.store, "codex")
    code, reports = _status(cli, "--host", "codex")
    report = reports["codex"]
    assert code == 1 and report["command_runs"] is False
    assert "exited with status 2: iai-mcp hook: error: unrecognized arguments: --host" in report["command_detail"]


def test_a_command_without_store_is_checked_against_the_hooks_own_store(cli, _isolate_home, tmp_path):
    """The installed command names no --store: the hook writes to the store
    its environment names (IAI_MCP_STORE here), whatever --store status has."""
    cli("capture", "x")
    path = _isolate_home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    hooks.install(path, hooks.hook_commands(str(tmp_path / "gone" / "iai-mcp"), None))
    elsewhere = tmp_path / "elsewhere"
    _, out, _ = cli("--store", str(elsewhere), "hooks", "status", "--json", "--host", "claude-code")
    (report,) = json.loads(out)
    assert report["store"] == str(cli.store) and report["store_reachable"] is True
    assert report["store_detail"] == "1 memories"
    assert not elsewhere.exists()


def test_any_hook_failure_reaches_status(cli, monkeypatch, tmp_path):
    """Not only the errors iai-mcp expects: whatever stops a hook is noted
    for status, then raised as before."""
    cli("capture", "x")

    def broken(*args, **kwargs):
        raise RuntimeError("the parser fell over")

    monkeypatch.setattr(hooks, "capture_transcript", broken)
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(SAMPLE.read_bytes())
    with pytest.raises(RuntimeError, match="the parser fell over"):
        cli("hook", "stop", stdin=json.dumps({"session_id": "s", "transcript_path": str(transcript)}))
    from iai_mcp.hooks import cursors

    stop = cursors.last_runs(cli.store / hooks.STATE_DIR, "claude-code")["stop"]
    assert stop["error"] == "RuntimeError: the parser fell over" and parse_time(stop["failed_at"]) is not None
