"""The serving half of the daemon: the accept loop, one thread per connection,
dispatch into the store, idle exit and an orderly shutdown.

``iai_mcp.daemon`` explains why there is a daemon and starts this one; the
wire format lives in ``daemon.wire``.
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iai_mcp import __version__
from iai_mcp.daemon import auth, wire
from iai_mcp.errors import IaiError, InvalidInput, StoreError
from iai_mcp.fs import write_atomic
from iai_mcp.heap import return_freed_heap
from iai_mcp.log import logger

#: How long shutdown waits for in-flight requests before closing the store.
DRAIN_REQUESTS_S = 30.0
#: How often the daemon checks that its socket file is still there: /tmp
#: cleaners delete old files, and a daemon nobody can reach blocks the store.
SOCKET_CHECK_S = 60.0
#: How long a stopping daemon waits for the request of a client still in its
#: listen backlog (a client sends right after connecting).
BACKLOG_READ_S = 2.0
#: How often the daemon purges forgotten memories whose undo window has ended
#: (also once at start). Hourly: the window is days long, and a purge holds
#: the store for the time it rewrites (2.1 s for a 100k-record fragment).
AUTO_PURGE_EVERY_S = 3600.0
#: A compaction the writes left (``MemoryStore.compact_if_due``) and a heap
#: trim run once no request has come for ``COMPACT_QUIET_S`` (``_when_quiet``);
#: checked every ``COMPACT_CHECK_S``.
COMPACT_QUIET_S = 2.0
COMPACT_CHECK_S = 0.5


_log = logger("iai_mcp.daemon")


def log(event: str, **fields: Any) -> None:
    _log(event, pid=os.getpid(), **fields)


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    session: auth.Session
    busy: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None


class Daemon:
    """Serves one open store on one listening socket until idle or told to stop."""

    def __init__(
        self, store: Any, listener: socket.socket, sock_path: Path, *, idle_timeout: float,
        wake: tuple[int, int], stop_requested: threading.Event, guard: auth.Guard | None = None,
    ) -> None:
        from iai_mcp.core import dispatch, recall_snapshot  # imported once, before any connection

        self.store = store
        self.root = Path(store.root)
        self._dispatch = dispatch
        self._listener = listener
        self._sock_path = sock_path
        self._sock_inode = os.stat(sock_path).st_ino
        self._idle_timeout = idle_timeout
        self._wake_r, self._wake_w = wake  # a self-pipe: signals and closing connections
        self._stop_requested = stop_requested
        self._stopping = False
        self._state_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._last_activity = time.monotonic()
        self._requests = 0
        self._started = time.time()
        self._embedder_ready = False
        self._guard = guard if guard is not None else auth.Guard(store.store_id)
        # Recall's keyword index, saved in the background for the next start.
        self._snapshots = recall_snapshot.Keeper(store, self._store_lock)

    # --------------------------------------------------------------- main loop

    def serve(self, on_listening: Callable[[Daemon], None] | None = None) -> int:
        reason = "signal"
        try:
            self._write_state("running")
            log("listening", socket=str(self._sock_path), store=str(self.root),
                records=len(self.store), idle_timeout_s=self._idle_timeout)
            if on_listening is not None:
                on_listening(self)
            threading.Thread(target=self._warm_embedder, name="iai-mcp-warmup", daemon=True).start()
            threading.Thread(target=self._auto_purge, name="iai-mcp-autopurge", daemon=True).start()
            threading.Thread(target=self._snapshots.run, args=(self._stop_requested,),
                             name="iai-mcp-snapshot", daemon=True).start()
            threading.Thread(target=self._when_quiet, name="iai-mcp-quiet", daemon=True).start()
            reason = self._loop()
        except BaseException as exc:
            # Whatever broke the loop, the store is still closed (queue drained)
            # and the socket and state file removed below.
            reason = "error"
            log("serve_failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._shutdown(reason)
        return 0

    def _loop(self) -> str:
        """Accept until asked to stop ("signal") or idle for the timeout ("idle")."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ, "accept")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stop_requested.is_set():
                idle = self._idle_remaining()
                events = sel.select(SOCKET_CHECK_S if idle is None else min(idle, SOCKET_CHECK_S))
                for key, _ in events:
                    if key.data == "wake":
                        _drain_pipe(self._wake_r)
                    elif not self._stop_requested.is_set():
                        self._accept()
                if not events and self._idle_remaining() == 0 and not self._accept_pending():
                    return "idle"
                if not self._socket_in_place():
                    sel.unregister(self._listener)
                    self._rebind()
                    sel.register(self._listener, selectors.EVENT_READ, "accept")
        return "signal"

    def request_stop(self) -> None:
        """Stop as SIGTERM would (for a daemon run in a thread of a larger process)."""
        self._stop_requested.set()
        wake(self._wake_w)

    def _socket_in_place(self) -> bool:
        try:
            return os.stat(self._sock_path).st_ino == self._sock_inode
        except OSError:
            return False

    def _rebind(self) -> None:
        """Someone removed or replaced our socket file: listen on a fresh one."""
        try:
            listener = bind_listener(self._sock_path)
        except (OSError, IaiError) as exc:
            log("socket_rebind_failed", socket=str(self._sock_path), error=str(exc))
            return
        self._listener.close()
        self._listener = listener
        self._sock_inode = os.stat(self._sock_path).st_ino
        log("socket_rebound", socket=str(self._sock_path))

    def _idle_remaining(self) -> float | None:
        with self._state_lock:
            if self._connections:
                return None  # a connection closing wakes the loop
            return max(0.0, self._last_activity + self._idle_timeout - time.monotonic())

    def _touch(self) -> None:
        with self._state_lock:
            self._last_activity = time.monotonic()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # EMFILE and friends: report, back off, keep serving
            log("accept_failed", error=str(exc))
            self._stop_requested.wait(0.1)
            return
        self._start_connection(sock)

    def _accept_pending(self) -> bool:
        """Before exiting idle, serve a client that connected at the last moment."""
        self._listener.setblocking(False)
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return False
        finally:
            self._listener.setblocking(True)
        self._start_connection(sock)
        return True

    def _start_connection(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        if not _peer_is_owner(sock):
            log("connection_refused", reason="peer is another user")
            sock.close()
            return
        conn = _Connection(sock, auth.Session(self._guard))
        conn.thread = threading.Thread(
            target=self._serve_connection, args=(conn,), name="iai-mcp-conn", daemon=True
        )
        with self._state_lock:
            self._connections.add(conn)
            self._last_activity = time.monotonic()
        conn.thread.start()

    # ------------------------------------------------------------- connections

    def _serve_connection(self, conn: _Connection) -> None:
        reader = wire.LineReader(conn.sock)
        try:
            while True:
                try:
                    line = reader.read_line()
                except wire.MessageTooLarge as exc:
                    error = wire.too_large("the request", exc.size)
                    conn.sock.sendall(wire.encode({"id": None, "error": wire.error_payload(error)}))
                    break  # the rest of that line is still unread: start over on a new connection
                if line is None:
                    break
                if not conn.session.authenticated:
                    reply, keep = conn.session.answer(line)
                    conn.sock.sendall(reply)
                    if not keep:
                        log("connection_refused", reason="passphrase not proved")
                        break
                    continue
                with conn.lock:
                    if self._stopping:
                        # Not run; saying so lets the client resend any method.
                        conn.sock.sendall(wire.stopping_error(_request_id(line)))
                        break
                    conn.busy = True
                self._touch()
                try:
                    conn.sock.sendall(self._handle(line))
                finally:
                    with conn.lock:
                        conn.busy = False
                    self._touch()
                if self._stopping:
                    break
        except OSError:
            pass  # the client went away; nothing of its own is pending
        finally:
            conn.sock.close()
            with self._state_lock:
                self._connections.discard(conn)
                self._last_activity = time.monotonic()
            wake(self._wake_w)

    def _handle(self, line: bytes) -> bytes:
        request_id = None
        try:
            try:
                request = wire.decode(line)
            except wire.DuplicateKey as exc:
                request_id = _request_id(line)
                raise InvalidInput(f"the request names {str(exc)!r} twice; give each parameter once") from None
            except ValueError:
                raise InvalidInput("a request is one line of JSON: {id, method, params}") from None
            if not isinstance(request, dict):
                raise InvalidInput("a request is a JSON object: {id, method, params}")
            request_id = request.get("id")
            method, params = request.get("method"), request.get("params")
            if not isinstance(method, str):
                raise InvalidInput("the request's 'method' must be a string")
            if params is not None and not isinstance(params, dict):
                raise InvalidInput("the request's 'params' must be an object")
            key = request.get("key")
            if key is not None and not (isinstance(key, str) and 0 < len(key) <= wire.MAX_KEY_CHARS):
                raise InvalidInput(f"the request's 'key' must be a string of 1-{wire.MAX_KEY_CHARS} characters")
            reply = wire.encode({"id": request_id, "result": self._call(method, params, key)})
        except IaiError as exc:
            reply = wire.encode({"id": request_id, "error": wire.error_payload(exc)})
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a bug: report it fully here, briefly to the client
            # BaseException too: a panic in a Rust extension (pyo3's
            # PanicException) would otherwise end this connection with no reply.
            log("request_failed", error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(limit=20))
            internal = IaiError(
                f"internal error in the iai-mcp daemon ({type(exc).__name__}: {exc}); "
                f"details in {self.root / wire.LOG_FILE}"
            )
            reply = wire.encode({"id": request_id, "error": wire.error_payload(internal)})
        if len(reply) > wire.MAX_MESSAGE_BYTES:
            error = wire.too_large("the answer", len(reply))
            reply = wire.encode({"id": request_id, "error": wire.error_payload(error)})
        return reply

    def _call(self, method: str, params: dict[str, Any] | None, key: str | None = None) -> dict[str, Any]:
        if method == wire.PING:
            return self.describe()
        if method in (auth.CHALLENGE, auth.AUTH):
            return {"required": False} if method == auth.CHALLENGE else {"authenticated": True}
        # One store call at a time. Captures must be: find-identical-then-insert
        # is not atomic. Recall could in principle run concurrently (rows and
        # vectors are append-only snapshots), but it also brings the BM25 index
        # recall keeps per store up to date, and retrieval.KeywordIndex is not
        # safe to score while another thread adds to it. The CPU-heavy part of
        # a call is the model, which would compete for the same cores anyway.
        with self._store_lock:
            with self._state_lock:
                self._requests += 1
            return self._dispatch(self.store, method, params, request_key=key)

    def describe(self) -> dict[str, Any]:
        with self._state_lock:
            connections, requests = len(self._connections), self._requests
        return {
            "pid": os.getpid(),
            "store": str(self.root),
            "socket": str(self._sock_path),
            "version": __version__,
            "started_at": self._started,
            "uptime_s": round(time.time() - self._started, 3),
            "connections": connections,
            "requests": requests,
            "records": len(self.store),
            "idle_timeout_s": self._idle_timeout,
            "embedder": self.store.embedder_name,
            "embedder_ready": self._embedder_ready,
        }

    def _warm_embedder(self) -> None:
        from iai_mcp.core.warmup import warm

        try:
            # The model loads outside the store lock (requests that need no
            # model go on meanwhile); the keyword index, shared with recalls,
            # is built under it.
            warmed = warm(self.store, index_lock=self._store_lock)
        except Exception as exc:  # requests that need the model will report it
            log("embedder_warmup_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._embedder_ready = True
        log("embedder_ready", embedder=warmed["embedder"], seconds=warmed["seconds"])
        self._snapshots.save("warmup")  # the next start loads what was just built

    def _auto_purge(self) -> None:
        """Purge expired forgotten memories now and every ``AUTO_PURGE_EVERY_S``,
        without a user action. A failure is one log line and a retry next
        time: a purge that did not finish stays recorded on disk, and every
        run finishes it (``lifecycle.purge_expired``), as does any open."""
        from iai_mcp.core import lifecycle

        while not self._stop_requested.is_set():
            try:
                with self._store_lock:
                    if self._stopping:
                        return
                    purged = lifecycle.purge_expired(self.store)
                if purged:
                    log("auto_purged", records=len(purged))
            except Exception as exc:
                log("auto_purge_failed", error=f"{type(exc).__name__}: {exc}",
                    consequence=f"retried in {AUTO_PURGE_EVERY_S:.0f} s")
            self._stop_requested.wait(AUTO_PURGE_EVERY_S)

    def _when_quiet(self) -> None:
        """Housekeeping once the daemon is quiet (no request for
        ``COMPACT_QUIET_S``), each at most once per quiet spell:

        - the compaction the writes left: the write that made it due has
          answered already, and the next request waits for it only if it
          arrives while the table is rewritten. ``compact_if_due`` logs its
          own failure and waits for more writes; anything else is logged here
          and tried again after the next request.
        - the heap the requests freed goes back to the system (``malloc_trim``:
          a recall's or a capture's temporaries, a snapshot save's arrays), so
          an idle daemon's RSS is what it holds, not what it once needed."""
        failed_after = None  # the last activity before a compaction failure
        trimmed_after = None  # the last activity before the last trim
        while not self._stop_requested.wait(COMPACT_CHECK_S):
            if not self._quiet():
                continue
            last = self._last_activity
            if last != failed_after and self.store.compaction_due:
                try:
                    with self._store_lock:
                        # Checked again with the lock: a request that ended just
                        # now (a long one: a purge) is likely followed by another.
                        if self._stopping:
                            return
                        if self._quiet():
                            self.store.compact_if_due()
                except Exception as exc:
                    failed_after = last
                    log("compaction_failed", error=f"{type(exc).__name__}: {exc}",
                        consequence="tried again when quiet after the next request")
            if last != trimmed_after and self._quiet():
                trimmed_after = last
                return_freed_heap()

    def _quiet(self) -> bool:
        """No request running, and none ended or started for ``COMPACT_QUIET_S``."""
        with self._state_lock:
            busy = any(conn.busy for conn in self._connections)
            return not busy and time.monotonic() - self._last_activity >= COMPACT_QUIET_S

    # ---------------------------------------------------------------- shutdown

    def _shutdown(self, reason: str) -> None:
        """Stop taking requests, let the ones running finish, then close the
        store (its provenance queue drains). The close runs whatever failed
        before it (a full disk refusing ``daemon.json``, say): the process
        ends right after (``lifecycle.end_process``), and only the close puts
        queued provenance on disk."""
        log("stopping", reason=reason)
        locked = False
        try:
            locked = self._quiesce()
        except Exception as exc:
            log("shutdown_step_failed", error=f"{type(exc).__name__}: {exc}", consequence="closing the store anyway")
        finally:
            try:
                self._snapshots.close(last_save=locked)  # what this process indexed is kept for the next start
            except Exception as exc:
                log("recall_snapshot_close_failed", error=f"{type(exc).__name__}: {exc}")
            try:
                self.store.close()  # drains the provenance queue
            except Exception as exc:
                log("store_close_failed", error=f"{type(exc).__name__}: {exc}")
            self._remove_state()
            log("stopped", reason=reason, requests=self._requests)

    def _quiesce(self) -> bool:
        """Refuse new requests and wait for running ones; True when the store
        lock was had (every request finished)."""
        try:
            self._write_state("stopping")
        except OSError as exc:  # a full disk: the stop goes on without it
            log("state_not_written", state="stopping", error=str(exc))
        # Unlink first, so new clients find no daemon and start the next one;
        # then clients already in the listen backlog are told their request
        # did not run (closing the listener would just drop them).
        self._unlink_socket()
        self._stopping = True  # read by each connection under its lock, below
        self._refuse_backlog()
        self._listener.close()
        with self._state_lock:
            connections = list(self._connections)
        for conn in connections:
            with conn.lock:
                if not conn.busy:  # idle: wake its reader; busy: it finishes, answers, leaves
                    try:
                        conn.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        deadline = time.monotonic() + DRAIN_REQUESTS_S
        for conn in connections:
            if conn.thread is not None:
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        locked = self._store_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        if not locked:
            log("requests_unfinished", detail="closing the store under a request that did not finish")
        return locked

    def _refuse_backlog(self) -> None:
        self._listener.setblocking(False)
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            try:
                sock.settimeout(BACKLOG_READ_S)
                if _peer_is_owner(sock):
                    line = wire.LineReader(sock).read_line()
                    if line is not None:
                        sock.sendall(wire.stopping_error(_request_id(line)))
            except (OSError, wire.MessageTooLarge):
                pass  # gone, silent or oversized: closing is all that is left
            finally:
                sock.close()

    def _unlink_socket(self) -> None:
        try:
            if os.stat(self._sock_path).st_ino == self._sock_inode:
                os.unlink(self._sock_path)
        except OSError:
            pass

    # ----------------------------------------------------------- daemon.json

    def _write_state(self, state: str) -> None:
        data = {
            "pid": os.getpid(), "state": state, "store": str(self.root),
            "socket": str(self._sock_path), "started_at": self._started, "version": __version__,
        }
        # No fsync: the file describes this live process; after a power loss
        # there is no process to describe, and readers check the pid anyway.
        write_atomic(self.root / wire.STATE_FILE, json.dumps(data), fsync=False)

    def _remove_state(self) -> None:
        state = wire.read_state(self.root)
        if state is not None and state.get("pid") == os.getpid():
            try:
                (self.root / wire.STATE_FILE).unlink()
            except OSError:
                pass


def _request_id(line: bytes) -> Any:
    try:
        request = json.loads(line)
    except ValueError:
        return None
    return request.get("id") if isinstance(request, dict) else None


def _peer_is_owner(sock: socket.socket) -> bool:
    """Defence in depth next to the socket's mode: on Linux ask the kernel who connected."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def wake(fd: int) -> None:
    try:
        os.write(fd, b"\0")
    except (BlockingIOError, OSError):
        pass  # the pipe is full: the loop is going to wake anyway


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


def bind_listener(sock_path: Path) -> socket.socket:
    wire.check_socket_location(sock_path, create=True)
    if os.path.lexists(sock_path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(str(sock_path))
        except (ConnectionRefusedError, FileNotFoundError):
            # Nobody listens: a daemon died without cleaning up. We hold the
            # store lock, so no live daemon of this store can own it.
            log("stale_socket_removed", socket=str(sock_path))
            os.unlink(sock_path)
        except OSError as exc:
            raise StoreError(f"{sock_path} exists and cannot be probed ({exc}); remove it") from None
        else:
            raise StoreError(f"another process is listening on {sock_path}; stop it or remove the file")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(sock_path))
        os.chmod(sock_path, 0o600)  # before listen(): nobody can connect in between
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener
