"""One daemon per store: the only process that opens it; everything else is a client.

Why a daemon, and not every process opening the store
-----------------------------------------------------
``MemoryStore`` loads the whole store at open and then works from memory:
rows, one vector matrix, the keyword index, the dedup map from text to
record, the LanceDB sequence counter. Two processes that each open the
store would each hold their own copy and drift apart: one process's captures
are invisible to the other's recall and dedup (the same text stored twice),
their sequence numbers collide, and the provenance log gets two writers.
That is exactly how peer memory servers lose writes (a JSONL rewritten by
two processes, a single-client SQLite, a vector index with two writers).

The alternatives cost more: re-reading the store on every call makes each
hook pay a full decrypt and load (seconds at 100k records) and still needs a
lock around every write; keeping per-process replicas in step needs a change
feed. One owner process keeps the in-memory design as it is, loads the
embedding model once instead of once per hook, and gives the provenance
queue one writer. The store's ``store.lock`` (an exclusive flock) makes the
rule hard: a second owner is refused with ``StoreLocked``, so even two
daemons racing to start cannot both open it.

Lifecycle
---------
The first client that finds no daemon starts one (``daemon_client``). The
daemon opens the store with its provenance queue, binds the socket (owner
only: mode 0600 and a peer-uid check), writes ``daemon.json``, starts
listening and only then warms the embedding model, so clients connect
while the model loads. Each connection gets a thread; calls into the store
run one at a time (see ``Daemon._call``). With no connection and no request
for ``idle_timeout`` seconds it exits. On SIGTERM or SIGINT it stops
accepting, lets in-flight requests finish, drains the provenance queue
(``store.close()``), removes its socket and ``daemon.json`` and exits 0.
Logs are one JSON object per line on stderr, which the spawner appends to
``<store>/daemon.log``.

Public API (the CLI's ``iai-mcp daemon run|status|stop`` wraps these):
``run(store_path)``, ``status(store_path) -> dict | None``,
``stop(store_path, timeout) -> bool``; also ``python -m iai_mcp.daemon``.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iai_mcp import __version__
from iai_mcp import daemon_protocol as wire
from iai_mcp.daemon_server import Daemon, bind_listener, log, wake
from iai_mcp.errors import IaiError, StoreError, StoreLocked

#: How long a new daemon waits for the store while the previous one drains.
LOCK_WAIT_S = 30.0
EXIT_OK, EXIT_FAILED = 0, 1


def _open_store(root: Path, stop_requested: threading.Event) -> Any:
    """Open the store; while the previous daemon is still draining it, wait."""
    from iai_mcp import app

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return app.open_store(root, provenance_queue=True)
        except StoreLocked as exc:
            previous = wire.read_state(root) or {}
            draining = previous.get("state") == "stopping" and previous.get("pid") == exc.holder_pid
            if not draining or time.monotonic() > deadline or stop_requested.is_set():
                raise
            stop_requested.wait(0.05)


def run(
    store_path: str | os.PathLike[str] | None = None,
    *,
    idle_timeout: float | None = None,
    on_listening: Callable[[Daemon], None] | None = None,
) -> int:
    """Run the daemon for ``store_path`` in this process until idle or signalled.

    Returns the exit code: 0 after a clean stop, 1 when it could not start
    (the reason is logged as a ``fatal`` line naming the error class).
    ``on_listening(daemon)`` is called once clients can connect; run from a
    thread other than the main one (no signal handlers then), stop it with
    ``daemon.request_stop()``.
    """
    from iai_mcp import app

    stop_requested = threading.Event()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)

    def on_signal(signum: int, _frame: Any) -> None:
        stop_requested.set()
        wake(wake_w)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    store = None
    try:
        root = wire.canonical_root(app.store_path(store_path))
        idle = app.daemon_idle_timeout() if idle_timeout is None else float(idle_timeout)
        log("starting", store=str(root), version=__version__)
        store = _open_store(root, stop_requested)
        if stop_requested.is_set():
            return EXIT_OK
        sock_path = wire.socket_path(root)
        listener = bind_listener(sock_path)
        daemon = Daemon(store, listener, sock_path, idle_timeout=idle, wake=(wake_r, wake_w),
                        stop_requested=stop_requested)
        store = None  # the daemon owns it now and closes it in shutdown
        return daemon.serve(on_listening)
    except IaiError as exc:
        log("fatal", error=wire.error_payload(exc))
        return EXIT_FAILED
    except Exception as exc:
        log("fatal", error={"code": "internal_error", "type": "StoreError",
                            "message": f"the daemon failed to start: {type(exc).__name__}: {exc}"},
            traceback=traceback.format_exc(limit=20))
        return EXIT_FAILED
    finally:
        if store is not None:
            store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def status(store_path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """What the running daemon says about itself (``ping``), or None if none answers."""
    from iai_mcp import app
    from iai_mcp.daemon_client import DaemonClient, DaemonNotRunning

    client = DaemonClient(wire.canonical_root(app.store_path(store_path)), autostart=False,
                          request_timeout=10.0)
    try:
        return client.call(wire.PING)
    except DaemonNotRunning:
        return None
    finally:
        client.close()


def stop(store_path: str | os.PathLike[str] | None = None, timeout: float = 30.0) -> bool:
    """Stop the store's daemon (SIGTERM: it drains, then exits).

    True when a daemon was running and has exited, False when none was
    running; StoreError if it is still running after ``timeout`` seconds.
    A daemon still opening the store (not listening yet) is found by its pid.
    """
    from iai_mcp import app

    info = status(store_path)
    if info is None:
        # Not listening yet (still opening a large store) is not "not running".
        root = wire.canonical_root(app.store_path(store_path))
        pid = _starting_daemon_pid(root)
        if pid is None:
            return False
        info = {"pid": pid, "store": str(root)}
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if not wait_for_exit(pid, timeout):
        raise StoreError(f"the daemon (pid {pid}) is still running {timeout}s after SIGTERM; "
                         f"see {info['store']}/{wire.LOG_FILE}")
    return True


def _starting_daemon_pid(root: Path) -> int | None:
    """The pid of a live daemon of ``root`` that does not answer yet, from
    ``daemon.json`` or ``store.lock``; None unless its command line says it
    is ``iai_mcp.daemon run`` for this very store (pids get reused)."""
    from iai_mcp.store.files import LOCK_FILE

    candidates = [(wire.read_state(root) or {}).get("pid")]
    try:
        candidates.append(int((root / LOCK_FILE).read_bytes().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    for pid in candidates:
        if isinstance(pid, int) and pid > 0 and pid != os.getpid() and wire.pid_alive(pid) \
                and _is_daemon_of(pid, root):
            return pid
    return None


def _is_daemon_of(pid: int, root: Path) -> bool:
    try:
        argv = [a.decode(errors="replace") for a in
                Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return False  # no /proc (macOS): never signal a process we cannot identify
    try:
        at = argv.index("iai_mcp.daemon")
        store = argv[argv.index("--store", at) + 1]
    except (ValueError, IndexError):
        return False
    return argv[at + 1:at + 2] == ["run"] and wire.canonical_root(store) == root


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has exited; True if it did within ``timeout``."""
    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process exits
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            readable, _, _ = select.select([fd], [], [], timeout)
            return bool(readable)
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout
    while wire.pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iai_mcp.daemon",
                                     description="The iai-mcp daemon that owns one store.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "serve the store in the foreground"),
                       ("status", "print the running daemon's status as JSON"),
                       ("stop", "stop the running daemon, draining its queue")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--store", help="store root (default: $IAI_MCP_STORE or ~/.iai-mcp)")
        if name == "run":
            sub.add_argument("--idle-timeout", type=float, help="seconds idle before exiting")
        if name == "stop":
            sub.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run(args.store, idle_timeout=args.idle_timeout)
        if args.command == "status":
            info = status(args.store)
            print(json.dumps(info if info is not None else {"running": False}))
            return EXIT_OK if info is not None else 3
        print(json.dumps({"stopped": stop(args.store, args.timeout)}))
        return EXIT_OK
    except IaiError as exc:
        print(f"iai-mcp daemon: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    # Run through the package module, so there is one copy of this module's state.
    from iai_mcp import daemon as _daemon

    raise SystemExit(_daemon.main())
