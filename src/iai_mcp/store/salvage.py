"""Salvage: what can still be read of a damaged store, copied into a fresh one.

``doctor --repair`` uses it when a store opens only in part (a damaged
LanceDB data file) or refuses to open because its records table is behind
what it last committed (a lost manifest). Nothing is decrypted: sealed rows
and sealed provenance entries are copied byte for byte, so the new store
needs the same key, and keeps it (same ``store_id``, same key file, keyring
entry or passphrase parameters). The damaged store is never changed: the
caller moves it aside (``move_aside``) and never deletes it.

``rebuild_log`` does the same for the provenance log alone, when the
records are intact and only the log is damaged.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from iai_mcp.errors import StoreError
from iai_mcp.fs import temp_path
from iai_mcp.store.damage import Damage
from iai_mcp.store.meta import EXPECTED_KEY, META_FILE, LOCK_FILE, take_owner_lock, write_json_atomic
from iai_mcp.store.provenance_log import FILE_NAME as LOG_FILE
from iai_mcp.store.provenance_log import copy_readable
from iai_mcp.store.records_table import TABLE, RecordsTable

#: What belongs to the table and the log (copied by reading, never as files),
#: or to the process that holds the store (never copied).
_NOT_COPIED = {f"{TABLE}.lance", LOG_FILE, f"{LOG_FILE}-wal", f"{LOG_FILE}-shm", LOCK_FILE, META_FILE,
               "daemon.json", "recovered"}
_BATCH = 4096


@dataclass(frozen=True)
class Salvaged:
    #: Rows copied, rows the old table lists but could not be read, and rows
    #: its meta recorded at the last commit (None in an older store).
    records: int
    records_damaged: int
    records_expected: int | None
    provenance: int
    provenance_damaged: int

    def lines(self) -> list[str]:
        out = [f"{self.records} record(s) copied"]
        if self.records_damaged:
            out.append(f"{self.records_damaged} record(s) in damaged data files could not be read")
        if self.records_expected is not None and self.records_expected > self.records + self.records_damaged:
            out.append(f"{self.records_expected - self.records - self.records_damaged} record(s) the store "
                       "last committed are in no version the table still has (a lost manifest)")
        out.append(f"{self.provenance} provenance entr{'y' if self.provenance == 1 else 'ies'} copied")
        if self.provenance_damaged:
            out.append(f"{self.provenance_damaged} provenance entr"
                       f"{'y' if self.provenance_damaged == 1 else 'ies'} could not be read")
        return out


def salvage(root: Path, dest: Path) -> Salvaged:
    """Copy what can be read of the store at ``root`` into a new store at
    ``dest`` (which must not exist). StoreLocked if another process has
    ``root`` open; ``root`` itself is only read."""
    if dest.exists():
        raise StoreError(f"{dest} already exists; salvage writes only into a new directory")
    lock = take_owner_lock(root)
    try:
        meta = json.loads((root / META_FILE).read_text("utf-8"))
        expected = meta.pop(EXPECTED_KEY, None)
        dest.mkdir(mode=0o700, parents=True)
        write_json_atomic(dest / META_FILE, meta)
        for entry in sorted(root.iterdir()):
            if entry.name in _NOT_COPIED or entry.is_socket():
                continue
            if entry.is_dir():
                shutil.copytree(entry, dest / entry.name, symlinks=True)
            elif entry.is_file():
                shutil.copy2(entry, dest / entry.name)  # the key file keeps its 0600
        copied, damaged = _copy_records(root, dest)
        entries, log_damage = 0, Damage()
        if (root / LOG_FILE).exists():  # none: the new store starts an empty log at its first open
            entries, log_damage = copy_readable(root / LOG_FILE, dest / LOG_FILE)
            os.chmod(dest / LOG_FILE, 0o600)
        return Salvaged(copied, damaged, int(expected["rows"]) if isinstance(expected, dict) else None,
                        entries, log_damage.rows)
    finally:
        os.close(lock)


def _copy_records(root: Path, dest: Path) -> tuple[int, int]:
    source = RecordsTable(root, create=False)  # an older version when behind; none when missing
    target = RecordsTable(dest)
    if source.version() is None:
        return 0, 0
    batch, copied = [], 0
    for row in source.scan():
        batch.append(row)
        if len(batch) == _BATCH:
            target.append(batch)
            copied, batch = copied + len(batch), []
    target.append(batch)
    return copied + len(batch), source.damage.rows


def move_aside(root: Path, what: str = "damaged") -> Path:
    """Rename ``root`` to a sibling ``<name>.<what>-<time>`` (never deleted)."""
    aside = root.with_name(f"{root.name}.{what}-{time.strftime('%Y%m%dT%H%M%S')}")
    os.rename(root, aside)
    return aside


def rebuild_log(root: Path) -> tuple[Path, int, int]:
    """Rebuild the provenance log of ``root`` from what can be read of it; the
    damaged file (with its WAL) goes to ``recovered/<time>/``. Returns where,
    entries copied, entries that could not be read."""
    lock = take_owner_lock(root)
    try:
        fresh = temp_path(root / LOG_FILE)  # a killed rebuild's is a stray temp: repair moves it aside
        copied, damage = copy_readable(root / LOG_FILE, fresh)
        os.chmod(fresh, 0o600)
        aside = root / "recovered" / time.strftime("%Y%m%dT%H%M%S")
        aside.mkdir(parents=True, exist_ok=True, mode=0o700)
        for suffix in ("", "-wal", "-shm"):
            if (root / f"{LOG_FILE}{suffix}").exists():
                os.replace(root / f"{LOG_FILE}{suffix}", aside / f"{LOG_FILE}{suffix}")
        os.replace(fresh, root / LOG_FILE)
        return aside, copied, damage.rows
    finally:
        os.close(lock)
