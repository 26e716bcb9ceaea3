"""``hooks status``: for each host, what is really there, checked rather
than assumed. Installed means our entry is in the host's hooks file; the
command it names is run twice, with the same ``--store`` so the same
interpreter and install answer: ``--version``, and the whole installed
command line with ``--help`` appended, which argparse only answers when
this install has the ``hook`` subcommand, the ``--host`` and the event the
entry names (an older install without Codex support fails here); the store
the hook writes to is reached through the backend the hook would use; and
the last run of each hook is read from the hook state.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput
from iai_mcp.hooks import cursors
from iai_mcp.hooks.hosts import EVENTS, Host
from iai_mcp.hooks.settings import command_argv, our_hooks

#: Bound on the probe run of the installed command.
PROBE_TIMEOUT_S = 30.0


def installed_commands(path: Path) -> dict[str, str]:
    """Our command per event in the hooks file at ``path`` (events without
    one are left out); ``InvalidInput`` if the file is there but unreadable."""
    try:
        settings = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} could not be read ({exc})") from None
    found: dict[str, str] = {}
    for event in EVENTS:
        hook = next(our_hooks(settings, event), None)
        if hook is not None:
            found[event] = hook["command"]
    return found


def store_of(argv: list[str]) -> str | None:
    """The ``--store`` an installed command names, if any."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "--store":
            return argv[i + 1]
    return None


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{argv[0]} did not run: {exc}"
    out = (done.stdout or done.stderr).strip()
    if done.returncode != 0:
        # argparse's last line names what this install does not know.
        last = (done.stderr or done.stdout).strip().splitlines()
        return False, f"{argv[0]} exited with status {done.returncode}: {last[-1] if last else ''}"
    return True, out


def probe(argv: list[str]) -> tuple[bool, str]:
    """Run the installed program the way the hook would: its version (the
    detail shown), then the installed command itself with ``--help``, so a
    program that lacks the hook subcommand, host or event fails here."""
    program = argv[0]
    if os.sep in program and not os.access(program, os.X_OK):
        return False, f"{program} does not exist or is not executable"
    runs, version = _run([*argv[:argv.index("hook")], "--version"])
    if not runs:
        return False, version
    supports, detail = _run([*argv, "--help"])
    if not supports:
        return False, f"{detail} (this install cannot run the hook as installed; reinstall the hooks)"
    return True, version


def host_status(
    host: Host, path: Path, reach: Callable[[str | None], tuple[bool, str, Path]],
) -> dict[str, Any]:
    """One host's status. ``reach(store)`` opens the backend of that store
    (None: the default) and answers (reachable, detail, store path)."""
    status: dict[str, Any] = {
        "host": host.name, "config": str(path), "config_error": None, "installed": dict.fromkeys(EVENTS, False),
        "command": None, "command_runs": None, "command_detail": None,
        "store": None, "store_reachable": None, "store_detail": None, "last_run": {}, "missing": [],
    }
    try:
        commands = installed_commands(path)
    except InvalidInput as exc:
        status["config_error"] = str(exc)
        return status
    status["installed"] = {event: event in commands for event in EVENTS}
    if not commands:
        return status
    status["missing"] = host.missing()
    command = commands.get("Stop") or next(iter(commands.values()))
    argv = command_argv(command) or []
    status["command"] = command
    status["command_runs"], status["command_detail"] = probe(argv)
    reachable, detail, store = reach(store_of(argv))
    status.update(store=str(store), store_reachable=reachable, store_detail=detail)
    runs = cursors.last_runs(store / cursors.STATE_DIR, host.name)
    status["last_run"] = {sub: runs.get(sub) for sub in EVENTS.values()}
    return status


def healthy(status: dict[str, Any]) -> bool:
    """Installed hosts must be whole and working, and no hook's latest run a
    failure; a host not installed is fine."""
    if status["config_error"]:
        return False
    installed = status["installed"].values()
    if not any(installed):
        return True
    failing = any(run and "failed_at" in run for run in status["last_run"].values())
    return all(installed) and bool(status["command_runs"]) and bool(status["store_reachable"]) and not failing
