"""The small files of a store root: meta.json (store id, key source, key
check, embedder identity) and store.lock (the single-owner flock)."""
from __future__ import annotations

import hmac
import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from iai_mcp.config import KeySettings
from iai_mcp.errors import StoreBehind, StoreError, StoreLocked
from iai_mcp.fs import open_locked, try_lock, write_atomic
from iai_mcp.log import logger
from iai_mcp.store import crypto

META_FILE = "meta.json"
LOCK_FILE = "store.lock"
FORMAT_VERSION = 1
#: meta.json key of the undo window: how long a forgotten (hidden) memory can
#: be restored before it is purged. Absent in older stores: the default holds.
UNDO_WINDOW_KEY = "undo_window_s"
DEFAULT_UNDO_WINDOW = timedelta(days=30)
#: meta.json key of what the records table held after the store's last commit
#: (``{"version", "rows", "mac"}``): absent in older stores until their next open.
EXPECTED_KEY = "records_table"


log_event = logger("iai_mcp.store")


def take_owner_lock(root: Path) -> int:
    """Exclusive, non-blocking flock on ``root/store.lock`` (``fs.open_locked``:
    released when the fd closes or the process dies, even by SIGKILL); returns
    its fd, which holds this process's pid for the error a second opener gets."""
    path = root / LOCK_FILE
    fd = open_locked(path)
    if fd is None:
        holder = lock_holder(root)
        who = f"process {holder}" if holder else "another process"
        raise StoreLocked(
            f"store {root} is already open in {who}. Only one process may open a store "
            "directly: go through the daemon (iai_mcp.backend.connect, or the iai-mcp CLI), "
            "or stop that process (iai-mcp daemon stop)",
            holder_pid=holder,
        )
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def take_reader_lock(root: Path) -> int | None:
    """``take_owner_lock`` for a store opened read-only (``MemoryStore(read_only=True)``):
    the same exclusive flock, taken on an fd opened for reading, so nothing
    is created or written (no pid); None when the store has no lock file."""
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    if not try_lock(fd):
        os.close(fd)
        holder = lock_holder(root)
        raise StoreLocked(f"store {root} is open in {f'process {holder}' if holder else 'another process'}; "
                          "it is read-only here, so only that process can serve it", holder_pid=holder)
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
def in_use(root: Path) -> int | None:
    """Whether another process has the store open now: the pid ``store.lock``
    names (0 if none is written yet) while its flock is held, else None. The
    lock is taken and released at once to know."""
    fd = open_locked(root / LOCK_FILE)
    if fd is None:
        return lock_holder(root) or 0
    os.close(fd)
    return None


def lock_holder(root: Path) -> int | None:
    """The pid ``store.lock`` names (the process that holds, or last held,
    the store), or None. Never takes the lock."""
    try:
        return int((root / LOCK_FILE).read_bytes().split()[0])
    except (ValueError, IndexError, OSError):
        return None  # no lock file, or the holder has not written its pid yet


def fix_key_file_mode(root: str | os.PathLike[str], *, apply: bool) -> str | None:
    """What is wrong with the permissions of the store's key file, if
    anything; with ``apply``, make it 0600 (owner only). Never reads the key."""
    root = Path(root)
    problem = crypto.key_file_mode_problem(root)
    if problem and apply:
        os.chmod(root / crypto.KEY_FILE_NAME, 0o600)
    return problem


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``meta.json`` through ``fs.write_atomic``: fsynced, renamed into place,
    owner-only (it names the key source and holds the key check)."""
    write_atomic(path, json.dumps(data, indent=2))


def open_meta(root: Path, key_settings: KeySettings) -> tuple[dict[str, Any], crypto.Cipher]:
    """Read (or, for a new store, create) ``meta.json`` and the key, and check
    the key against it. Never writes over anything that is already there."""
    meta_path = root / META_FILE
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            source = crypto.KeySource(meta["key_source"]["kind"], meta["key_source"]["params"])
            store_id, check = meta["store_id"], meta["key_check"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"{meta_path} is unreadable ({exc}); restore it from backup. "
                "Nothing was changed"
            ) from None
        key = crypto.load_key(root, source, key_settings)
        cipher = crypto.Cipher(key)
        crypto.verify_key_check(cipher, store_id, check, root)
        if source.kind == "file" and (problem := crypto.key_file_mode_problem(root)):
            # Warn rather than refuse as ssh does: a memory server that will not
            # start loses the user's memory for the session. doctor FAILs it and
            # repair (iai_mcp.core.repair) fixes it.
            log_event("key_file_mode_loose", problem=problem)
        return meta, cipher
    if (root / crypto.KEY_FILE_NAME).exists():
        # A key with no meta: a first open killed between the two writes, or a
        # lost meta.json. Never create a second key over the first.
        raise StoreError(
            f"{root} has a key file but no {META_FILE}; refusing to create a second key. "
            f"If this store never held "
            f"memories, move {root / crypto.KEY_FILE_NAME} aside and open it again; "
            f"otherwise restore {META_FILE} from backup"
        )
    if any(root.glob("*.lance")) or (root / "provenance.sqlite3").exists():
        raise StoreError(
            f"{root} holds store data but no {META_FILE}; refusing to create a "
            "new key over it. Restore meta.json from backup"
        )
    store_id = uuid4().hex
    key, source = crypto.create_key(root, store_id, key_settings)
    cipher = crypto.Cipher(key)
    meta = {
        "format": FORMAT_VERSION,
        "store_id": store_id,
        "created_at": time.time(),
        "key_source": {"kind": source.kind, "params": source.params},
        "key_check": crypto.make_key_check(cipher, store_id),
        "embedder": None,
    }
    write_json_atomic(meta_path, meta)
    return meta, cipher


def undo_window(meta: dict[str, Any]) -> timedelta:
    """The store's undo window (``DEFAULT_UNDO_WINDOW`` unless set)."""
    seconds = meta.get(UNDO_WINDOW_KEY)
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0:
        return timedelta(seconds=seconds)
    return DEFAULT_UNDO_WINDOW


def _expected_mac(cipher: crypto.Cipher, store_id: str, version: int, rows: int, next_seq: int) -> str:
    return cipher.digest(f"records_table:{store_id}:{version}:{rows}:{next_seq}".encode(), chars=32)


def record_expected(meta: dict[str, Any], cipher: crypto.Cipher, version: int, rows: int, next_seq: int) -> None:
    """Remember (in ``meta``, MACed with the store's key so it cannot be
    lowered by hand) the table version and row count a commit left, and the
    next insertion number (seqs are never reused)."""
    meta[EXPECTED_KEY] = {"version": version, "rows": rows, "next_seq": next_seq,
                          "mac": _expected_mac(cipher, meta["store_id"], version, rows, next_seq)}


def check_expected(root: Path, meta: dict[str, Any], cipher: crypto.Cipher, version: int | None, rows: int) -> None:
    """StoreBehind unless the records table (``version`` None: not found) is
    at least as new as the last commit recorded, with the rows it recorded.

    A newer version is fine: a process killed between a LanceDB commit and
    the meta write that records it leaves exactly that. The same version
    with other rows, or an older one, is a lost or replaced manifest."""
    expected = meta.get(EXPECTED_KEY)
    fix = ("run `iai-mcp doctor --repair` to salvage what can be read into a fresh store "
           "(the damaged one is moved aside, never deleted), or restore the store from a backup")
    if expected is None:
        if version is None:  # an older store whose table has data files but no manifest
            raise StoreBehind(f"the records table in {root} has data files but no readable manifest; {fix}")
        return
    try:
        want_version, want_rows = int(expected["version"]), int(expected["rows"])
        mac = _expected_mac(cipher, meta["store_id"], want_version, want_rows, int(expected["next_seq"]))
        sound = hmac.compare_digest(str(expected["mac"]), mac)
    except (KeyError, TypeError, ValueError):
        sound = False
    if not sound:
        raise StoreBehind(f"{root / META_FILE} holds a records-table expectation that fails its check "
                          f"(edited or damaged); {fix}")
    if version is None:
        raise StoreBehind(f"the records table in {root} is missing (no readable manifest) but the store "
                          f"last committed version {want_version} with {want_rows} records; {fix}")
    if version < want_version or (version == want_version and rows != want_rows):
        raise StoreBehind(f"the records table in {root} is at version {version} with {rows} records, but the "
                          f"store last committed version {want_version} with {want_rows} records "
                          f"(a manifest was lost or the table replaced); {fix}")
