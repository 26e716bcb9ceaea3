"""The daemon's wire: where its socket lives, how messages are framed, how errors travel.

Newline-delimited JSON over an ``AF_UNIX`` ``SOCK_STREAM`` socket. JSON
escapes every newline inside a string, so one message is exactly one line::

    -> {"id": 7, "method": "memory_recall", "params": {"cue": "..."}, "key": "9f2c..."}
    <- {"id": 7, "result": {...}}
    <- {"id": 7, "error": {"code": "invalid_input", "type": "InvalidInput", "message": "..."}}

``key`` (optional) names the request however often it is sent: the client
draws one per call and sends the same one again when it resends the call
to a new daemon, and the daemon hands it to ``dispatch`` (``request_key``),
which makes a recall's provenance entries the same on both runs.

An error crosses the wire as the name of its class in ``iai_mcp.errors``
and comes back out as that class with the same message, so adapters on the
client side translate errors by type exactly as they would in-process.

Files next to the store (``<store>/``): ``daemon.json`` (pid and state),
``daemon.log`` (the daemon's stderr), ``daemon.spawn.lock`` (one spawner at a
time) and ``daemon.sock`` when its path fits in ``sockaddr_un``; a longer
store path gets its socket in a private ``/tmp/iai-mcp-<uid>/`` (mode 0700).

Pure stdlib, imported by both sides; nothing here reads the environment.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from iai_mcp import errors
from iai_mcp.errors import IaiError, LimitExceeded, StoreError

#: Largest single message either side will read or write. A capture is at
#: most 100k characters (under 1 MB as JSON); a recall answer is bounded by
#: its token budget. 32 MiB leaves room for memory_get on a much-recalled record.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

#: Longest request ``key`` the daemon accepts (the client sends 32 hex digits).
MAX_KEY_CHARS = 128

#: sockaddr_un holds 108 bytes on Linux and 104 on macOS, NUL included.
MAX_SOCKET_PATH_BYTES = 100

SOCKET_FILE = "daemon.sock"
STATE_FILE = "daemon.json"
LOG_FILE = "daemon.log"
SPAWN_LOCK_FILE = "daemon.spawn.lock"
PRIVATE_SOCKET_BASE = Path("/tmp")

#: Methods the daemon answers itself, without touching the store.
PING = "ping"
#: Error code of a request the daemon refused, unrun, because it is stopping;
#: the client may send it again to the next daemon whatever the method.
STOPPING = "daemon_stopping"

_ERROR_TYPES: dict[str, type[IaiError]] = {
    name: obj
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, IaiError)
}


class MessageTooLarge(Exception):
    """A peer sent a line longer than ``MAX_MESSAGE_BYTES`` (internal to the wire)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"message of at least {size} bytes")
        self.size = size


def canonical_root(path: str | os.PathLike[str]) -> Path:
    """The store root as both sides name it: absolute, symlinks resolved, so
    every spelling of one store finds the same daemon."""
    return Path(path).expanduser().resolve()


def private_socket_dir() -> Path:
    return PRIVATE_SOCKET_BASE / f"iai-mcp-{os.getuid()}"


def socket_path(root: Path) -> Path:
    direct = root / SOCKET_FILE
    if len(os.fsencode(direct)) <= MAX_SOCKET_PATH_BYTES:
        return direct
    digest = hashlib.sha1(os.fsencode(root)).hexdigest()[:16]
    return private_socket_dir() / f"{digest}.sock"


def check_private_dir(path: Path, *, create: bool) -> None:
    """Refuse a socket directory another user could have planted or can enter:
    a client would otherwise hand its memories to whoever listens there."""
    if create:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise
        return  # no daemon can be listening there yet
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise StoreError(
            f"{path} must be a directory owned by you with mode 0700 (it holds the daemon "
            "socket of a store with a long path); remove or fix it and retry"
        )


def check_socket_location(sock_path: Path, *, create: bool = False) -> None:
    if sock_path.parent == private_socket_dir():
        check_private_dir(sock_path.parent, create=create)


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line; raises TypeError/ValueError if not JSON."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    ) + b"\n"


class DuplicateKey(ValueError):
    """A JSON object named the same key twice."""


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def decode(line: bytes) -> Any:
    """One message. JSON allows a key twice and ``json.loads`` keeps the last
    one; a request that says ``"pinned": true`` and ``"pinned": false`` is
    contradictory, so it is refused (``DuplicateKey``) rather than half heard.
    ``ValueError`` for anything that is not JSON."""
    return json.loads(line, object_pairs_hook=_one_value_per_key)


def error_payload(exc: IaiError) -> dict[str, str]:
    return {"code": exc.code, "type": type(exc).__name__, "message": str(exc)}


def error_from_payload(payload: Any) -> IaiError:
    """The exception a reply's ``error`` stands for, chosen by class name."""
    if not isinstance(payload, dict):
        return StoreError(f"the daemon sent a malformed error: {payload!r:.200}")
    cls = _ERROR_TYPES.get(str(payload.get("type")), IaiError)
    return cls(str(payload.get("message", "")))


def stopping_error(request_id: Any = None) -> bytes:
    """The reply to a request the daemon did not run because it is stopping."""
    return encode({"id": request_id, "error": {
        "code": STOPPING, "type": "StoreError",
        "message": "the daemon is stopping; the request was not run",
    }})


def too_large(what: str, size: int) -> LimitExceeded:
    return LimitExceeded(
        f"{what} is {size} bytes; the daemon protocol carries at most {MAX_MESSAGE_BYTES}. "
        "Send less text per call, or ask for fewer results (k, budget_tokens)"
    )


class LineReader:
    """Reads newline-terminated messages from a stream socket, bounded in size."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline

    def read_line(self, limit: int = MAX_MESSAGE_BYTES) -> bytes | None:
        """The next message without its newline; None at end of stream (a
        partial message at the end is dropped: the sender died mid-write)."""
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > limit:
                raise MessageTooLarge(len(self._buf))
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                return None
            self._buf += chunk


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(root: Path) -> dict[str, Any] | None:
    """``daemon.json`` as the daemon last wrote it, or None."""
    try:
        state = json.loads((root / STATE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


# -- the passphrase on ``daemon run --passphrase-stdin``


def piped_passphrase(passphrase: str) -> bytes:
    """What a spawner writes to the daemon's stdin: the passphrase and one
    newline, like ``echo pw |``, so both are read the same way and a
    passphrase that itself ends in a newline keeps it."""
    return passphrase.encode("utf-8") + b"\n"


def passphrase_from_pipe(data: bytes) -> str | None:
    """The passphrase in what ``--passphrase-stdin`` read: ``echo pw |``
    sends ``pw\\n`` and the passphrase is ``pw``, so exactly one trailing
    ``\\n`` (or ``\\r\\n``) is dropped; anything else is the passphrase's."""
    text = data.decode("utf-8")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text or None
