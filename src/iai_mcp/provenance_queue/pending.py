"""Pending batches: the one sealed file format for provenance not yet in the log.

Two kinds of file hold batches the log may not have yet, and both are this
format, read by ``read`` and set aside by ``quarantine``:

* journal segments, ``<store root>/journal/prov-<store id>-<order>.journal``:
  every batch a live queue was handed, so that ``kill -9`` loses none;
* spill files, ``~/.iai-mcp/.provenance-overflow/prov-<store id>-<order>.jsonl``
  (shared by every store of the user): batches the queue had no room for in
  memory, or could not write.

A file is a JSON header naming its store, then one line per batch::

    {"iai_mcp_pending": 1, "store_id": "<32 hex>"}
    <seq> <base64(seal(runs))>

``runs`` is ``encode_pairs``' JSON. A batch is sealed once, when it is
enqueued: its journal line and, if it comes to that, its spill line carry the
same bytes, and the log seals each entry once more for itself. So no cue is
ever in the clear, and a spill costs a file write, not another encryption.

Reading never applies anything wrongly. A file named for another store is
never opened. A file whose header is missing, unreadable or names another
store is quarantined whole (spill files the previous release wrote, header
``iai_mcp_spill``, are read too: ``_previous_release_line``). Lines are
authenticated: one that does not open
(another key, damage) is skipped and its file quarantined after its good
lines were applied. A last line without its newline is a write cut short by
a kill: ignored, with a log line. Quarantine renames ``x.<suffix>`` to
``x.failed-<ns>.<suffix>``; such a file is never read again. Applying a line
twice is harmless: every pair carries its entry id, and the log ignores an
id it already holds.
"""
from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from iai_mcp.types import ProvenancePair

FORMAT = 1
#: Headers read as this format: ours, and journals written before spill
#: files shared it (same line format and associated data).
_HEADERS = ("iai_mcp_pending", "iai_mcp_journal")
#: The header of spill files the previous release wrote (another line
#: format, same associated data: see ``_previous_release_line``).
_PREVIOUS_RELEASE_SPILL = "iai_mcp_spill"
#: The purpose a store seals pending lines for (``store.sealer``); the name
#: predates the one format and stays so that older journals still open.
SEAL_PURPOSE = "spill"
JOURNAL_SUFFIX = ".journal"
SPILL_SUFFIX = ".jsonl"
NAME = re.compile(
    r"^prov-(?P<store>[0-9a-f]{32})-(?P<order>\d{20}(?:-\d+)+)(?P<suffix>\.journal|\.jsonl)$"
)
QUARANTINED = ".failed-"

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: How this package reports: ``log("event", field=value)`` (``iai_mcp.log``).
Log = Callable[..., None]


class Sealer(Protocol):
    """Authenticated encryption bound to one store and one purpose."""

    def seal(self, data: bytes) -> bytes: ...

    def open(self, blob: bytes) -> bytes: ...


# ------------------------------------------------------------------ lines


def encode_pairs(pairs: Sequence[ProvenancePair]) -> bytes:
    """JSON body of one line: runs of pairs that share an entry,
    ``[[entry, [record_id, entry_id, record_id, entry_id, ...]], ...]``.

    A recall gives every hit the same entry, so runs halve the bytes and the
    encoding time of the obvious ``[[record_id, entry, entry_id], ...]``.
    A pair whose entry is not JSON is left out (the log would skip it too).
    """
    runs: list[list[Any]] = []
    previous: Any = None
    ids: list[str] = []
    for p in pairs:
        if p.entry is not previous and (previous is None or p.entry != previous):
            previous, ids = p.entry, []
            runs.append([previous, ids])
        ids.append(p.record_id.hex if isinstance(p.record_id, UUID) else str(p.record_id))
        ids.append(p.entry_id)
    try:
        return _encode_json(runs).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        good = []
        for run in runs:
            try:
                _encode_json(run).encode("utf-8")
            except (TypeError, ValueError):
                continue
            good.append(run)
        return _encode_json(good).encode("utf-8")


def decode_pairs(body: bytes) -> list[ProvenancePair]:
    """Inverse of ``encode_pairs``; ValueError on anything else."""
    pairs = []
    for entry, ids in json.loads(body):
        if not isinstance(entry, dict) or not isinstance(ids, list) or len(ids) % 2:
            raise ValueError("line is not [[entry, [record_id, entry_id, ...]], ...]")
        for i in range(0, len(ids), 2):
            record_id, entry_id = ids[i], ids[i + 1]
            if not isinstance(record_id, str) or not isinstance(entry_id, str):
                raise ValueError("record and entry ids must be strings")
            pairs.append(ProvenancePair(record_id, dict(entry), entry_id))
    return pairs


def seal_batch(sealer: Sealer, pairs: Sequence[ProvenancePair]) -> bytes:
    """The payload of a batch's line: sealed once, reused by journal and spill."""
    return base64.b64encode(sealer.seal(encode_pairs(pairs)))


def line(seq: int, payload: bytes) -> bytes:
    return b"%d %s\n" % (seq, payload)


def header(store_id: str) -> bytes:
    return json.dumps({_HEADERS[0]: FORMAT, "store_id": store_id}).encode("ascii") + b"\n"


# ---------------------------------------------------------------- reading


@dataclass
class Contents:
    """What ``read`` found: the good ``(seq, pairs)`` lines, in file order,
    and why the file must be quarantined (None when it need not be)."""

    lines: list[tuple[int, list[ProvenancePair]]] = field(default_factory=list)
    problem: str | None = None


def read(data: bytes, store_id: str, sealer: Sealer, log: Log, name: str) -> Contents:
    """Parse one pending file's bytes (see the module docstring)."""
    found = Contents()
    head, newline, rest = data.partition(b"\n")
    try:
        meta = json.loads(head)
    except ValueError:
        meta = None
    decode: Callable[[bytes, int, Sealer], tuple[int, list[ProvenancePair]]] | None = None
    if isinstance(meta, dict) and newline:
        if any(meta.get(key) == FORMAT for key in _HEADERS):
            decode = _line
        elif meta.get(_PREVIOUS_RELEASE_SPILL) == FORMAT:
            decode = _previous_release_line
    if decode is None:
        found.problem = "no pending-batch header"
        return found
    if meta.get("store_id") != store_id:
        found.problem = "named for this store but its header names another"
        return found
    lines = rest.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    if torn:
        log("pending_torn_tail", file=name, bytes=len(torn), action="ignored")
    bad = 0
    for number, text in enumerate(lines, start=2):
        try:
            found.lines.append(decode(text, number, sealer))
        except Exception as exc:
            bad += 1
            log("pending_line_unreadable", file=name, line=number,
                error=f"{type(exc).__name__}: {exc}", action="skipped; file will be quarantined")
    if bad:
        found.problem = f"{bad} unreadable line(s)"
    return found


def _line(text: bytes, number: int, sealer: Sealer) -> tuple[int, list[ProvenancePair]]:
    """``<seq> <base64(seal(encode_pairs))>``: a line of this format."""
    seq_text, payload = text.split(b" ", 1)
    return int(seq_text), decode_pairs(sealer.open(base64.b64decode(payload, validate=True)))


def _previous_release_line(text: bytes, number: int, sealer: Sealer) -> tuple[int, list[ProvenancePair]]:
    """A line of a spill file the previous release wrote, read so that what
    it spilled before an upgrade is applied rather than quarantined.

    Its files were ``{"iai_mcp_spill": 1, "store_id": ...}`` then
    ``{"sealed": base64(seal(json))}``, the JSON being
    ``[[record_id, entry, entry_id], ...]`` sealed for ``SEAL_PURPOSE`` like
    ours, under the same file names. A line carries no seq: its line number
    keeps the file's order.
    """
    blob = base64.b64decode(json.loads(text)["sealed"], validate=True)
    pairs = []
    for record_id, entry, entry_id in json.loads(sealer.open(blob)):
        if not isinstance(entry, dict) or not isinstance(record_id, str):
            raise ValueError("line is not [[record_id, entry, entry_id], ...]")
        pairs.append(ProvenancePair(record_id, entry, str(entry_id)))
    return number, pairs


def quarantine(path: Path, reason: str, log: Log) -> None:
    """Set a file aside as ``<stem>.failed-<ns><suffix>``: never read again,
    never deleted (it may be someone's only copy)."""
    target = path.with_name(f"{path.stem}{QUARANTINED}{time.time_ns()}{path.suffix}")
    try:
        os.replace(path, target)
        log("pending_quarantined", file=path.name, moved_to=target.name, reason=reason)
    except FileNotFoundError:
        pass  # another queue got there first
    except OSError as exc:
        log("pending_quarantine_failed", file=path.name, reason=reason, error=str(exc))


def ours(directory: Path, store_id: str, suffix: str) -> list[tuple[str, Path]]:
    """``(order, path)`` of the files in ``directory`` with ``suffix`` this
    store may read, oldest first. Files named for another store and
    quarantined ones are left out; a file with an unknown name comes first
    (order ``""``), so that a malformed stray is quarantined early."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"*{suffix}"):
        if QUARANTINED in path.name or not _regular(path):
            continue
        match = NAME.match(path.name)
        if match and match["store"] != store_id:
            continue  # another store's: not ours to read or remove
        found.append((match["order"] if match else "", path.name, path))
    return [(order, path) for order, _name, path in sorted(found)]


def _regular(path: Path) -> bool:
    """A plain file, not a symlink: opening a FIFO someone left under a
    spill or journal name would block the worker forever, and a device or a
    link is nothing this package wrote. Such a path is passed over."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is still a plain file when opened
    (``O_NONBLOCK``: a FIFO swapped in after the listing does not block);
    OSError otherwise, FileNotFoundError if it is gone."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def state(directory: Path, store_id: str, suffix: str) -> tuple[int, int]:
    """``(pending, quarantined)`` in ``directory``, read without a lock or a
    key: files of ``store_id`` still to replay, and quarantined files of any
    store (a stray's owner cannot be known)."""
    pending = quarantined = 0
    if directory.is_dir():
        for path in directory.iterdir():
            if QUARANTINED in path.name:
                quarantined += 1
            elif (match := NAME.match(path.name)) and match["store"] == store_id and path.suffix == suffix:
                pending += 1
    return pending, quarantined
