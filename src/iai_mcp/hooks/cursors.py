"""Hook state beside the store: a byte cursor per transcript, and when each
hook of each host last ran.

A cursor file is named by a keyed digest of the transcript's path (the
store's ``keyed_digest``, a subkey of its key) and holds the byte offset
only: nothing in the state directory says which transcripts exist, and the
store never hands out its key. Cursors written before this (``stop-*.json``,
the path in clear) are migrated by ``migrate`` and then deleted.

Two runs on one transcript (Claude Code starts the async Stop hook of the
next turn while the last one may still be storing) take turns: each holds
the transcript's lock file (``cursor-<key>.lock``, flock) from reading the
cursor until its records are stored and the cursor written, so the second
reads where the first ended. A cursor never moves back past an offset
another run wrote.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iai_mcp.fs import make_private_dir, open_locked, write_atomic
from iai_mcp.log import logger
from iai_mcp.types import utcnow

STATE_DIR = "hook-state"
PURPOSE = "hook-cursor"
_OLD_CURSORS = "stop-*.json"
#: How long a run waits for another run on the same transcript: a batch to
#: the daemon takes seconds at most (a cold daemon 2-6 s), well inside this;
#: past it the transcript is left for the next run, which captures it.
LOCK_WAIT_S = 60.0
_LOCK_POLL_S = 0.05

_log = logger("iai_mcp.hooks")


def transcript_name(transcript: Path) -> str:
    """The one spelling of a transcript's path that is digested, so the Stop
    hook (given a path by the host) and a backfill (walking the tree) agree."""
    return str(transcript.expanduser().resolve())


def keys(backend: Any, transcripts: Sequence[Path]) -> list[str]:
    """The cursor key of each transcript (one ``keyed_digest`` call per 1000)."""
    names = [transcript_name(t) for t in transcripts]
    digests: list[str] = []
    for i in range(0, len(names), 1000):
        digests += backend.call("keyed_digest", {"purpose": PURPOSE, "values": names[i:i + 1000]})["digests"]
    return digests


def _path(state_dir: Path, key: str) -> Path:
    return state_dir / f"cursor-{key}.json"


def lock(state_dir: Path, key: str, wait_s: float = LOCK_WAIT_S) -> int | None:
    """Hold the lock of transcript ``key`` (an fd: ``os.close`` releases it),
    waiting up to ``wait_s`` for a run that holds it; None if it still does."""
    make_private_dir(state_dir)
    deadline = time.monotonic() + wait_s
    while (fd := open_locked(state_dir / f"cursor-{key}.lock")) is None:
        if time.monotonic() >= deadline:
            _log.warning("hook_transcript_busy", cursor=key, waited_s=wait_s)
            return None
        time.sleep(_LOCK_POLL_S)  # flock has no timeout of its own
    return fd


def unlock(fd: int) -> None:
    os.close(fd)


def stored(state_dir: Path, key: str) -> int | None:
    """The offset cursor ``key`` holds, or None (none, or unreadable)."""
    try:
        return int(json.loads(_path(state_dir, key).read_text("utf-8"))["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start(offset: int | None, transcript: Path) -> int:
    """Where to read ``transcript`` from, given its stored cursor."""
    # A transcript shorter than the cursor was rewritten: start again (capture skips repeats).
    return offset if offset is not None and 0 <= offset <= transcript.stat().st_size else 0


def write(state_dir: Path, key: str, offset: int, *, read_as: int | None = None) -> None:
    """Set cursor ``key`` to ``offset``; never back past an offset another run
    wrote since this one read ``read_as`` (back to a rewritten transcript's
    end only by the run that found it rewritten)."""
    current = stored(state_dir, key)
    if current is not None and current > offset and current != read_as:
        return
    make_private_dir(state_dir)
    # No fsync: a cursor lost to a power cut only makes the next run send
    # turns again, which capture skips (same session, text and time).
    write_atomic(_path(state_dir, key), json.dumps({"offset": offset}), fsync=False)


def migrate(backend: Any, state_dir: Path) -> int:
    """Replace cursors that kept the transcript path in clear by keyed ones
    (same offset), then delete them; returns how many were removed. One that
    cannot be read, or whose transcript is gone, is only deleted: a lost
    cursor makes the next run send its turns again, and capture skips them."""
    old = sorted(state_dir.glob(_OLD_CURSORS)) if state_dir.is_dir() else []
    if not old:
        return 0
    found: list[tuple[Path, int]] = []
    for path in old:
        try:
            state = json.loads(path.read_text("utf-8"))
            transcript, offset = Path(state["transcript"]), int(state["offset"])
            if transcript.is_file() and 0 <= offset <= transcript.stat().st_size:
                found.append((transcript, offset))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for (transcript, offset), key in zip(found, keys(backend, [t for t, _ in found]) if found else []):
        if not _path(state_dir, key).exists():
            write(state_dir, key, offset)
    for path in old:
        path.unlink(missing_ok=True)
    return len(old)


# ------------------------------------------------------------ last runs


def _runs_path(state_dir: Path, host: str) -> Path:
    return state_dir / f"runs-{host}.json"


def last_runs(state_dir: Path, host: str) -> dict[str, Any]:
    """``{hook: {"at": ISO time, ...counts}}`` of the last run of each hook."""
    try:
        runs = json.loads(_runs_path(state_dir, host).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return runs if isinstance(runs, dict) else {}


def record_run(state_dir: Path, host: str, hook: str, **counts: int) -> None:
    """Note that ``hook`` of ``host`` ran now (two hooks finishing at once
    may keep only one of their notes: each says only "ran at")."""
    _note(state_dir, host, hook, {"at": utcnow().isoformat(), **counts})


def record_failure(state_dir: Path, host: str, hook: str, error: str) -> None:
    """Note that ``hook`` failed now, keeping when it last succeeded: a hook
    that runs in the background has nobody to tell but ``hooks status``."""
    previous = last_runs(state_dir, host).get(hook)
    ok = {k: v for k, v in previous.items() if k not in ("failed_at", "error")} if isinstance(previous, dict) else {}
    _note(state_dir, host, hook, {**ok, "failed_at": utcnow().isoformat(), "error": error})


def _note(state_dir: Path, host: str, hook: str, note: dict[str, Any]) -> None:
    runs = last_runs(state_dir, host)
    runs[hook] = note
    make_private_dir(state_dir)
    write_atomic(_runs_path(state_dir, host), json.dumps(runs), fsync=False)
