"""DaemonClient: the backend adapters use, a thin client of the store's daemon.

``call(method, params)`` sends one request over the daemon's socket and
returns its result, or raises the same ``iai_mcp.errors`` class the daemon
raised. When no daemon answers, the client starts one (``python -m
iai_mcp --store <root> daemon run``), detached, with stderr appended to
``<store>/daemon.log``, and waits until it listens. ``daemon.spawn.lock``
lets one client at a time do that, so racing clients start one daemon; the
store's own lock would refuse a second owner anyway.

If the daemon goes away between two calls (idle exit, ``daemon stop``, a
crash), the next call reconnects, starting a new daemon, and is sent once
more. A request whose connection broke after it was sent may or may not
have run; it is sent again only for methods where running twice is
harmless (``core.contract`` declares which); it goes with the same request
``key`` (``wire``), so a recall that ran before the break and runs again
leaves its provenance once. A daemon that is stopping
answers the requests it will not run with ``daemon_stopping``; those are
sent again whatever the method.

A passphrase store's daemon serves a connection only after it proves the
passphrase (``daemon.auth``); the client does that before its first request
and hands the passphrase to a daemon it spawns through a pipe, not argv or
the environment.

Pure stdlib: no model, no store, no numpy in a client process.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from iai_mcp import config
from iai_mcp.daemon import auth, wire
from iai_mcp.errors import IaiError, InvalidInput, StoreError
from iai_mcp.fs import make_private_dir, try_lock

#: A cold start opens the store (seconds at 100k records) before it listens.
SPAWN_TIMEOUT_S = 60.0
#: Longest a single call may take; a model load plus a large recall fit easily.
REQUEST_TIMEOUT_S = 300.0
#: daemon.log is rotated (to daemon.log.1) when a spawn finds it larger.
LOG_ROTATE_BYTES = 8 * 1024 * 1024



def _resendable(method: str) -> bool:
    """Safe to send again when the connection broke after sending: ping only
    reads; for dispatch methods, ``core.contract`` says (and why). Imported
    here, on the rare broken connection, so a client process never pays for
    loading the contract (pydantic) on the ordinary path."""
    if method == wire.PING:
        return True
    from iai_mcp.core.contract import resendable

    return resendable(method)




class DaemonNotRunning(StoreError):
    """No daemon answers for the store and this client may not start one."""

    code = "daemon_not_running"


class DaemonClient:
    """A ``Backend`` whose calls run in the daemon that owns the store at ``root``.

    One connection, one request at a time; safe to share between threads
    (they take turns). ``close`` closes the connection, not the daemon.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        autostart: bool = True,
        spawn_timeout: float = SPAWN_TIMEOUT_S,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.root = wire.canonical_root(root)
        self.socket_path = wire.socket_path(self.root)
        self.autostart = autostart
        self.spawn_timeout = spawn_timeout
        self.request_timeout = request_timeout
        self._sock: socket.socket | None = None
        self._reader: wire.LineReader | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        # Read when a daemon asks for it, so a passphrase set later is seen.
        self._prover = auth.Prover(lambda: config.key_settings().passphrase)
        self._handshake_due = False

    # ------------------------------------------------------------------ calls

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run ``method`` in the daemon; raises the daemon's error class on failure."""
        if not isinstance(method, str):
            raise InvalidInput(f"method must be a string, got {type(method).__name__}")
        if params is not None and not isinstance(params, Mapping):
            raise InvalidInput(f"{method}: params must be an object, got {type(params).__name__}")
        params = dict(params or {})
        if method == "memory_capture" and params.get("ts") is None:
            # Stamped here, when the words were handed over, not when a busy or
            # just-starting daemon gets to them; it also makes a resend idempotent.
            params["ts"] = datetime.now(timezone.utc).isoformat()
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            try:
                # The key stays the same when the payload is sent again below:
                # the daemon that runs the resend writes what the first run
                # wrote (see wire), not a second copy.
                payload = wire.encode({"id": request_id, "method": method, "params": params,
                                       "key": os.urandom(16).hex()})
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"{method}: params must be plain JSON values ({exc})") from None
            if len(payload) > wire.MAX_MESSAGE_BYTES:
                raise wire.too_large(f"the {method} request", len(payload))
            for attempt in (1, 2):
                sock = self._ready()
                try:
                    sock.sendall(payload)
                except OSError:
                    self._disconnect()  # never reached a live daemon: safe to send again
                    if attempt == 1:
                        continue
                    raise StoreError(f"cannot send {method} to the daemon of {self.root}; "
                                     f"see {self.root / wire.LOG_FILE}") from None
                reply = self._read_reply(method, request_id)
                if reply is None:
                    if attempt == 1 and _resendable(method):
                        continue
                    raise StoreError(
                        f"the daemon of {self.root} went away while running {method}; it may or "
                        f"may not have run. See {self.root / wire.LOG_FILE}"
                    )
                if "error" in reply:
                    if attempt == 1 and _not_run(reply["error"]):
                        self._disconnect()  # that daemon is stopping: the next one runs it
                        continue
                    raise wire.error_from_payload(reply["error"])
                result = reply.get("result")
                if not isinstance(result, dict):
                    self._disconnect()
                    raise StoreError(f"the daemon sent a malformed answer to {method}")
                return result
        raise AssertionError("unreachable")

    def _read_reply(self, method: str, request_id: int) -> dict[str, Any] | None:
        """The reply to ``request_id``; None if the connection closed first."""
        assert self._reader is not None
        try:
            line = self._reader.read_line()
        except TimeoutError:
            self._disconnect()
            raise StoreError(
                f"the daemon of {self.root} did not answer {method} within "
                f"{self.request_timeout:.0f}s; see {self.root / wire.LOG_FILE}"
            ) from None
        except wire.MessageTooLarge as exc:
            self._disconnect()
            raise wire.too_large(f"the answer to {method}", exc.size) from None
        except OSError:
            line = None
        if line is None:
            self._disconnect()
            return None
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or reply.get("id") not in (request_id, None):
            self._disconnect()
            raise StoreError(f"the daemon sent an unreadable answer to {method}")
        if reply.get("id") is None and "error" in reply:
            self._disconnect()  # the daemon gave up on this connection (oversized request)
        return reply

    # ------------------------------------------------------------- connection

    def connect(self) -> DaemonClient:
        """Connect now (starting the daemon if needed) rather than on the first call."""
        with self._lock:
            self._connected()
        return self

    def _connected(self) -> socket.socket:
        if self._sock is None:
            sock = _try_connect(self.socket_path)
            if sock is None:
                if not self.autostart:
                    raise DaemonNotRunning(f"no iai-mcp daemon is running for {self.root}")
                sock = self._start_daemon_and_connect()
            sock.settimeout(self.request_timeout)
            self._sock, self._reader = sock, wire.LineReader(sock)
            self._handshake_due = True
        return self._sock

    def _ready(self) -> socket.socket:
        """A connection that has done the auth handshake (``daemon.auth``). Not
        part of ``connect()``: a daemon may be connected to before its accept
        loop runs, and the handshake needs an answer."""
        deadline = time.monotonic() + self.spawn_timeout
        while True:
            sock = self._connected()
            if self._handshake_due and not auth.passphrase_protected(self.root):
                self._handshake_due = False  # nothing to prove: the socket's mode guards it
            if not self._handshake_due:
                return sock
            reader = self._reader
            assert reader is not None
            try:
                self._prover.handshake(lambda message: _exchange(sock, reader, message), self.root)
            except _Stopping:
                # Reached a daemon on its way out: its socket is gone by now,
                # so the next attempt finds (or starts) the next daemon.
                self._disconnect()
                if time.monotonic() > deadline:
                    raise StoreError(f"the daemon of {self.root} kept stopping; see "
                                     f"{self.root / wire.LOG_FILE}") from None
                time.sleep(0.01)
                continue
            except BaseException:
                self._disconnect()
                raise
            self._handshake_due = False
            return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._reader = None, None

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ spawn

    def _start_daemon_and_connect(self) -> socket.socket:
        deadline = time.monotonic() + self.spawn_timeout
        try:
            make_private_dir(self.root)
            lock_fd = os.open(self.root / wire.SPAWN_LOCK_FILE,
                              os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot start a daemon for {self.root}: {exc}") from None
        try:
            while True:  # another client may be starting it right now
                sock = _try_connect(self.socket_path)
                if sock is not None:
                    return sock
                if try_lock(lock_fd):
                    break
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another process has been starting the daemon of {self.root} for "
                        f"{self.spawn_timeout:.0f}s; see {self.root / wire.LOG_FILE}"
                    )
                time.sleep(0.01)
            sock = _try_connect(self.socket_path)
            if sock is not None:
                return sock
            return self._spawn(deadline)
        finally:
            os.close(lock_fd)  # releases the spawn lock

    def _spawn(self, deadline: float) -> socket.socket:
        log_path = self.root / wire.LOG_FILE
        try:
            if log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(log_path, log_path.with_name(wire.LOG_FILE + ".1"))
        except FileNotFoundError:
            pass
        command = [sys.executable, "-m", "iai_mcp", "--store", str(self.root), "daemon", "run"]
        # The passphrase goes through a pipe on stdin, never argv or the
        # environment: /proc/<pid>/environ keeps the environment a process
        # started with for its whole life, whatever it removes later.
        passphrase = config.key_settings().passphrase
        env = {k: v for k, v in os.environ.items() if k != config.PASSPHRASE_ENV}
        if passphrase:
            command.append("--passphrase-stdin")
        # The log may name the store's files and errors: owner-only, like the key.
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with open(log_fd, "ab") as log:
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE if passphrase else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, env=env,
                start_new_session=True, close_fds=True, cwd="/",
            )
        if proc.stdin is not None:
            try:
                proc.stdin.write(wire.piped_passphrase(passphrase))  # far below a pipe's buffer
                proc.stdin.close()
            except OSError:
                pass  # it died at once: the wait below reports why
        try:
            while True:
                sock = _try_connect(self.socket_path)
                if sock is not None:
                    return sock
                try:
                    code = proc.wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"the daemon of {self.root} (pid {proc.pid}) did not start listening "
                            f"within {self.spawn_timeout:.0f}s; see {log_path}"
                        ) from None
                    continue
                sock = _try_connect(self.socket_path)  # lost a start race to a daemon that is up
                if sock is not None:
                    return sock
                raise _startup_failure(log_path, proc.pid, code)
        finally:
            # Reap it when it exits so a long-lived client does not collect a zombie.
            threading.Thread(target=proc.wait, name="iai-mcp-reaper", daemon=True).start()


def _exchange(sock: socket.socket, reader: wire.LineReader, message: dict[str, Any]) -> dict[str, Any]:
    """One handshake request and its reply (the connection is not in use yet)."""
    try:
        sock.sendall(wire.encode(message))
        line = reader.read_line()
        reply = json.loads(line) if line is not None else None
    except (OSError, ValueError, wire.MessageTooLarge) as exc:
        raise StoreError(f"the daemon closed the connection during the handshake ({exc})") from None
    if not isinstance(reply, dict):
        raise StoreError("the daemon closed the connection during the handshake")
    if _not_run(reply.get("error")):
        raise _Stopping()
    return reply


class _Stopping(Exception):
    """The daemon answered the handshake with ``daemon_stopping``."""


def _not_run(error: Any) -> bool:
    return isinstance(error, dict) and error.get("code") == wire.STOPPING


def _try_connect(sock_path: Path) -> socket.socket | None:
    """A connected socket, or None when nothing listens at ``sock_path``."""
    wire.check_socket_location(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(str(sock_path))
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
        # No file, or a file nobody listens on (a daemon that died or is
        # stopping): the spawner replaces it.
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise StoreError(f"cannot connect to the daemon socket {sock_path}: {exc}") from None
    return sock


def _startup_failure(log_path: Path, pid: int, code: int) -> IaiError:
    """The error the daemon logged as ``fatal`` before exiting, as its own class."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 65536))
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    for raw in reversed(lines):
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "fatal" and event.get("pid") == pid:
            return wire.error_from_payload(event.get("error"))
    return StoreError(f"the daemon (pid {pid}) exited with code {code} before it was ready; "
                      f"see {log_path}")
