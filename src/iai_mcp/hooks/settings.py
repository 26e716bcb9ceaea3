"""A host's hooks file: merging our two hooks in, and taking exactly them out.

``install`` merges the hooks into the user's file without touching anything
else, after a timestamped backup; ``uninstall`` removes exactly the entries
``install`` adds (recognised by their command: ``iai-mcp ... hook ...
session-start`` / ``stop``) and the containers it created that are left
empty, so install then uninstall gives back the file byte for byte when
it was ours to write. Claude Code's settings.json and Codex's hooks.json
share this shape.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput
from iai_mcp.fs import write_atomic
from iai_mcp.hooks.hosts import EVENTS, HOSTS

#: Mode of a settings.json that ``install`` creates (an existing one keeps its own).
NEW_SETTINGS_MODE = 0o600


def default_settings_path() -> Path:
    return HOSTS["claude-code"].config_path()


def executable() -> str:
    """The iai-mcp command hooks should run: the script next to this
    interpreter (the same install), else the one on PATH."""
    beside = Path(sys.executable).parent / "iai-mcp"
    if beside.exists():
        return str(beside)
    return shutil.which("iai-mcp") or "iai-mcp"


def hook_commands(program: str, store: str | None = None, host: str = "claude-code") -> dict[str, str]:
    """The command of each hook; Claude Code's carry no ``--host`` (its default),
    so commands installed before other hosts existed still match."""
    prefix = [program] + (["--store", store] if store else []) + ["hook"]
    if host != "claude-code":
        prefix += ["--host", host]
    return {event: shlex.join([*prefix, sub]) for event, sub in EVENTS.items()}


def is_ours(command: Any, event: str) -> bool:
    """Whether ``command`` is the iai-mcp hook ``install`` writes for ``event``."""
    argv = command_argv(command)
    return (
        argv is not None
        and len(argv) >= 3
        and os.path.basename(argv[0]) == "iai-mcp"
        and "hook" in argv[1:-1]
        and argv[-1] == EVENTS[event]
    )


def command_argv(command: Any) -> list[str] | None:
    if not isinstance(command, str):
        return None
    try:
        return shlex.split(command)
    except ValueError:
        return None


# ----------------------------------------------------------------- settings


@dataclass
class SettingsChange:
    path: Path
    changed: bool
    settings: dict[str, Any]
    backup: Path | None = None
    notes: list[str] = field(default_factory=list)


def _load_settings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    try:
        settings = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); fix it, then run this again") from None
    if not isinstance(settings, dict):
        raise InvalidInput(f"{path} does not hold a JSON object; fix it, then run this again")
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        raise InvalidInput(f"{path}: 'hooks' is not an object of lists; fix it, then run this again")
    return settings


def _original_bytes(path: Path, settings: dict[str, Any]) -> bytes | None:
    """The newest backup ``install`` made that holds exactly ``settings``:
    writing its bytes back restores the user's own formatting, which a JSON
    dump would not. None when the user changed something since."""
    for backup in sorted(path.parent.glob(f"{path.name}.iai-mcp-backup-*"), reverse=True):
        try:
            data = backup.read_bytes()
            if json.loads(data) == settings:
                return data
        except (OSError, ValueError):
            continue
    return None


def _write_settings(change: SettingsChange, data: bytes | None = None) -> None:
    path = change.path
    path.parent.mkdir(parents=True, exist_ok=True)
    # The user's file keeps its mode; a new one is owner-only, since settings
    # may carry secrets (its "env" block).
    mode = NEW_SETTINGS_MODE
    if path.exists():
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
        change.backup = path.with_name(f"{path.name}.iai-mcp-backup-{stamp}")
        shutil.copy2(path, change.backup)
        mode = stat.S_IMODE(change.backup.stat().st_mode)
    if data is None:
        data = (json.dumps(change.settings, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    write_atomic(path, data, mode=mode)


def install(
    path: Path, commands: Mapping[str, str], *, options: Mapping[str, Mapping[str, Any]] | None = None,
    dry_run: bool = False,
) -> SettingsChange:
    """Add (or update) one hook per event, each entry with ``options[event]``
    (its timeout, say); a no-op when already installed just so."""
    settings = _load_settings(path)
    change = SettingsChange(path, False, settings)
    hooks = settings.setdefault("hooks", {})
    for event, command in commands.items():
        entry = {"type": "command", "command": command, **(options or {}).get(event, {})}
        groups = hooks.setdefault(event, [])
        mine = [
            hook
            for group in groups if isinstance(group, dict) and isinstance(group.get("hooks"), list)
            for hook in group["hooks"] if isinstance(hook, dict) and is_ours(hook.get("command"), event)
        ]
        if entry in mine:
            continue
        if mine:  # installed from another path or by an older version: make it this one
            mine[0].clear()
            mine[0].update(entry)
            change.notes.append(f"{event}: updated the hook to {json.dumps(entry)}")
        else:
            groups.append({"matcher": "", "hooks": [entry]})
            change.notes.append(f"{event}: added {command}")
        change.changed = True
    if change.changed and not dry_run:
        _write_settings(change)
    return change


def uninstall(path: Path, *, dry_run: bool = False) -> SettingsChange:
    """Remove the entries ``install`` adds, and the containers it created
    that are left empty; nothing else."""
    settings = _load_settings(path)
    change = SettingsChange(path, False, settings)
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return change
    for event in EVENTS:
        groups = hooks.get(event)
        if not isinstance(groups, list):
            continue
        kept_groups, removed = [], 0
        for group in groups:
            if not (isinstance(group, dict) and isinstance(group.get("hooks"), list)):
                kept_groups.append(group)
                continue
            kept = [h for h in group["hooks"] if not (isinstance(h, dict) and is_ours(h.get("command"), event))]
            removed += len(group["hooks"]) - len(kept)
            if kept or len(kept) == len(group["hooks"]):
                kept_groups.append({**group, "hooks": kept})
        if removed:
            change.changed = True
            change.notes.append(f"{event}: removed {removed} iai-mcp hook(s)")
            if kept_groups:
                hooks[event] = kept_groups
            else:
                del hooks[event]
    if change.changed and not hooks:
        del settings["hooks"]
    if change.changed and not dry_run:
        _write_settings(change, _original_bytes(path, settings))
    return change
