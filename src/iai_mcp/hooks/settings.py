"""A host's hooks file: merging our two hooks in, and taking exactly them out.

``install`` merges the hooks into the user's file without touching anything
else, after a timestamped backup; ``uninstall`` removes exactly the entries
``install`` adds (recognised by their command: ``iai-mcp ... hook ...
session-start`` / ``stop``) and the containers it created that are left
empty, so install then uninstall gives back the file byte for byte. Which
containers install created is read from the state before it: the newest
backup that holds none of our hooks (a user's own empty ``"hooks": {}`` or
``"Stop": []`` stays), or, when install created the file itself, the marker
``<file>.iai-mcp-created`` it leaves beside it: uninstall then deletes the
file (and the marker) if nothing but ours was ever put in it. Claude Code's
settings.json and Codex's hooks.json share this shape.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from collections.abc import Iterator, Mapping
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


def our_hooks(settings: Any, event: str) -> Iterator[dict[str, Any]]:
    """The entries of ``event`` in a hooks file's ``settings`` that are ours."""
    hooks = settings.get("hooks") if isinstance(settings, dict) else None
    groups = hooks.get(event) if isinstance(hooks, dict) else None
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, dict) and isinstance(group.get("hooks"), list):
            yield from (h for h in group["hooks"] if isinstance(h, dict) and is_ours(h.get("command"), event))


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


def _backups(path: Path) -> Iterator[tuple[bytes, Any]]:
    """The backups ``install`` made of ``path``, newest first, as (bytes, JSON)."""
    for backup in sorted(path.parent.glob(f"{path.name}.iai-mcp-backup-*"), reverse=True):
        try:
            data = backup.read_bytes()
            yield data, json.loads(data)
        except (OSError, ValueError):
            continue


def _original_bytes(path: Path, settings: dict[str, Any]) -> bytes | None:
    """The newest backup ``install`` made that holds exactly ``settings``:
    writing its bytes back restores the user's own formatting, which a JSON
    dump would not. None when the user changed something since."""
    return next((data for data, loaded in _backups(path) if loaded == settings), None)


def created_marker(path: Path) -> Path:
    return path.with_name(f"{path.name}.iai-mcp-created")


def _before_install(path: Path) -> dict[str, Any] | None:
    """The hooks file as it was before ``install`` touched it: empty when
    install created it, else the newest backup without our hooks; None when
    that is not known (backups deleted)."""
    if created_marker(path).exists():
        return {}
    for _, loaded in _backups(path):
        if isinstance(loaded, dict) and not any(any(our_hooks(loaded, event)) for event in EVENTS):
            return loaded
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
        mine = list(our_hooks(settings, event))
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
        created = not path.exists()
        _write_settings(change)
        if created:  # what uninstall reads to give the file back as it was: absent
            write_atomic(created_marker(path), "created by iai-mcp hooks install\n", fsync=False)
    return change


def _strip_ours(settings: dict[str, Any], before: dict[str, Any] | None) -> dict[str, int]:
    """Take our entries out of ``settings`` (in place), and the containers
    left empty that ``before`` (the file before install; None: unknown)
    did not have; returns how many entries went, per event."""
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return {}
    before_hooks = before.get("hooks") if before is not None else None
    counts: dict[str, int] = {}
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
            counts[event] = removed
            # An emptied list goes only if install made it (the user's own "Stop": [] stays).
            if kept_groups or (isinstance(before_hooks, dict) and event in before_hooks):
                hooks[event] = kept_groups
            else:
                del hooks[event]
    if counts and not hooks and not (before is not None and "hooks" in before):
        del settings["hooks"]
    return counts


def uninstall(path: Path, *, dry_run: bool = False) -> SettingsChange:
    """Remove the entries ``install`` adds, and the containers it created
    that are left empty; nothing else. A file install created and nobody
    else wrote in is deleted, with the backups made of it holding only ours."""
    settings = _load_settings(path)
    change = SettingsChange(path, False, settings)
    for event, removed in _strip_ours(settings, _before_install(path)).items():
        change.changed = True
        change.notes.append(f"{event}: removed {removed} iai-mcp hook(s)")
    if not change.changed or dry_run:
        return change
    marker = created_marker(path)
    if not settings and marker.exists():
        for backup in path.parent.glob(f"{path.name}.iai-mcp-backup-*"):
            try:
                loaded = json.loads(backup.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(loaded, dict) and _strip_ours(loaded, {}) and not loaded:
                backup.unlink()  # made by a reinstall, of a file that only ever held ours
        path.unlink()
    else:
        _write_settings(change, _original_bytes(path, settings))
    marker.unlink(missing_ok=True)  # whatever is left of the file is the user's
    return change
