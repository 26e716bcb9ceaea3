"""Capturing transcripts: the Stop hook (one transcript, the turns since
its last run) and ``import-transcripts`` (every transcript of a host) share
one parser per host, one cursor per transcript and one batching loop, so a
turn a backfill stored is never sent again by the hook, and the reverse.

Each turn is captured once. A cursor per transcript remembers how far the
last run got, and every turn goes in with the transcript's session id and
the turn's own timestamp, so a turn sent again (cursor lost, transcript
rewritten, two runs at once) is "skipped" by capture rather than stored or
reinforced twice. Records go through ``memory_import`` (core's
``capture_many``), many transcripts to a batch.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput
from iai_mcp.hooks import cursors
from iai_mcp.hooks.hosts import Host
from iai_mcp.hooks.transcript import BATCH, batch_full, read_turns, record_size, records
from iai_mcp.project import project_of

STATUSES = ("inserted", "reinforced", "skipped")


def _no_counts() -> dict[str, int]:
    return {"turns": 0, **dict.fromkeys(STATUSES, 0)}


@dataclass
class _Run:
    """One pass over some transcripts: records wait in ``batch`` and a
    transcript's cursor is written once all of its records are stored."""

    backend: Any
    state_dir: Path
    dry_run: bool
    counts: dict[str, int] = field(default_factory=_no_counts)
    batch: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    #: Transcripts whose records are all in ``batch`` or stored: (cursor key,
    #: the offset its cursor held when read, the offset to set, the lock held).
    waiting: list[tuple[str, int | None, int, int | None]] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        n = record_size(record)
        if batch_full(self.batch, self.size, n):
            self.send()
        self.batch.append(record)
        self.size += n

    def send(self) -> None:
        """Store the batch, then move the cursors it completes. Only after
        the batch is stored: a failed run is simply run again."""
        if self.batch and not self.dry_run:
            result = self.backend.call("memory_import", {"records": self.batch})
            for status in STATUSES:
                self.counts[status] += result[status]
        elif self.dry_run:
            self.counts["inserted"] += len(self.batch)  # at most: some may be repeats
        self.batch, self.size = [], 0
        for key, read_as, offset, _ in self.waiting:
            if not self.dry_run:
                cursors.write(self.state_dir, key, offset, read_as=read_as)
        self.release()

    def release(self) -> None:
        """Let other runs at the waiting transcripts (also when a send failed:
        their cursors stay where they were, and a later run sends again)."""
        for *_, fd in self.waiting:
            if fd is not None:
                cursors.unlock(fd)
        self.waiting = []


def capture_transcripts(
    backend: Any,
    host: Host,
    transcripts: Sequence[tuple[Path, str | None]],
    state_dir: Path,
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    project: str | None = None,
) -> dict[str, int]:
    """Capture the turns of each ``(transcript, session id)`` after its
    cursor; returns counts (``turns`` read, then ``inserted``, ``reinforced``,
    ``skipped``; with ``dry_run`` nothing is sent and ``inserted`` counts the
    records that would be). ``progress(turns)`` is called after each transcript.
    ``project``: the project of turns whose host recorded no ``cwd``.
    ``backend`` None (a dry run where no store exists yet): no cursors, so
    every turn is new, and nothing is created to find that out."""
    run = _Run(backend, state_dir, dry_run)
    if not dry_run:
        cursors.migrate(backend, state_dir)
    paths = [t for t, _ in transcripts]
    keys: list[str | None] = [*cursors.keys(backend, paths)] if backend is not None else [None] * len(paths)
    try:
        for (transcript, session_id), key in zip(transcripts, keys):
            # Read -> store -> move the cursor under the transcript's lock, so
            # a run that overlaps this one reads where this one ends (a dry run
            # writes nothing, and takes no lock).
            fd = None if dry_run else cursors.lock(state_dir, key)
            if fd is None and not dry_run:
                continue  # another run still holds it: the next run captures these turns
            try:
                read_as = cursors.stored(state_dir, key) if key is not None else None
                turns, end = read_turns(transcript, cursors.start(read_as, transcript), host.turn_of)
                run.counts["turns"] += len(turns)
                cwd = None if project is not None else host.cwd_of(transcript)
                for record in records(turns, session_id, host.tag, project_of(cwd) if cwd else project):
                    run.add(record)
            except BaseException:
                if fd is not None:  # not yet in run.waiting, which release() frees
                    cursors.unlock(fd)
                raise
            run.waiting.append((key, read_as, end, fd))
            if len(run.waiting) >= BATCH:  # bounds the locks (and files) held at once
                run.send()
            if progress is not None:
                progress(len(turns))
        run.send()
    finally:
        run.release()
    return run.counts


# -------------------------------------------------------------------- hook


def parse_payload(raw: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidInput(f"hook input is not JSON ({exc}); the host sends a JSON object on stdin") from None
    if not isinstance(payload, dict):
        raise InvalidInput("hook input must be a JSON object")
    return payload


def _payload_field(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"hook input: {name!r} must be a string")
    return value


def capture_transcript(backend: Any, payload: Mapping[str, Any], state_dir: Path, host: Host) -> dict[str, int]:
    """The Stop hook: capture the turns of the payload's transcript that no
    run has seen yet; returns counts."""
    session_id = _payload_field(payload, "session_id")
    raw_path = _payload_field(payload, "transcript_path")
    if raw_path is None and "transcript_path" in payload:
        # Codex sends null for a session it keeps no rollout of: nothing to capture.
        counts = _no_counts()
        cursors.record_run(state_dir, host.name, "stop", **counts)
        return counts
    if not raw_path:
        raise InvalidInput(f"hook input has no 'transcript_path'; is this the Stop hook of {host.label}?")
    transcript = Path(raw_path).expanduser()
    if not transcript.is_file():
        raise InvalidInput(f"transcript {transcript} does not exist")
    counts = capture_transcripts(backend, host, [(transcript, session_id or host.session_of(transcript))], state_dir,
                                 project=project_field(payload))
    cursors.record_run(state_dir, host.name, "stop", **counts)
    return counts


def project_field(payload: Mapping[str, Any]) -> str | None:
    """The project of the hook input's ``cwd`` (its git root, else the
    directory; ``project.project_of``), None when the host sent no cwd."""
    cwd = _payload_field(payload, "cwd")
    return project_of(cwd) if cwd else None


def session_start(backend: Any, payload: Mapping[str, Any], budget_tokens: int) -> dict[str, Any]:
    return backend.call("session_start", {
        "session_id": _payload_field(payload, "session_id"), "budget_tokens": budget_tokens,
        "project": project_field(payload),
    })
