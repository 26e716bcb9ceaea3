"""Start, query and stop the daemon of one store.

``run(store_path)`` serves the store in this process until it is idle or
signalled; ``status`` asks a running daemon about itself; ``stop`` sends it
SIGTERM and waits for it to drain. The CLI's ``iai-mcp daemon run|status|stop``
wraps these, and ``daemon.client`` spawns ``python -m iai_mcp --store ROOT
daemon run`` when no daemon answers.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from iai_mcp import __version__, config
from iai_mcp.config import KeySettings
from iai_mcp.daemon import auth, wire
from iai_mcp.daemon.service import Daemon, bind_listener, log, wake
from iai_mcp.errors import IaiError, KeyUnavailable, StoreError, StoreLocked, WrongKey

#: How long a new daemon waits for the store while the previous one drains.
LOCK_WAIT_S = 30.0
EXIT_OK, EXIT_FAILED = 0, 1


def _open_store(root: Path, stop_requested: threading.Event, key_settings: KeySettings) -> Any:
    """Open the store; while the previous daemon is still draining it, wait."""
    from iai_mcp import backend

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            # Compaction rewrites the table (0.45-1.5 s at 100k records): the daemon
            # runs it between requests (``Daemon._when_quiet``).
            return backend.open_store(root, provenance_queue=True, key_settings=key_settings, compact_when_idle=True)
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
    key_settings: KeySettings | None = None,
) -> int:
    """Run the daemon for ``store_path`` in this process until idle or signalled.

    Returns the exit code: 0 after a clean stop, 1 when it could not start
    (the reason is logged as a ``fatal`` line naming the error class).
    ``on_listening(daemon)`` is called once clients can connect; run from a
    thread other than the main one (no signal handlers then), stop it with
    ``daemon.request_stop()``.

    ``key_settings``: the passphrase as the spawning client handed it over
    (through a pipe, never argv or the environment); None reads
    ``IAI_MCP_CRYPTO_PASSPHRASE``, which is then removed from this process's
    environment. Only the auth key derived from it is kept (``daemon.auth``).
    """
    from iai_mcp import backend

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
        root = wire.canonical_root(backend.store_path(store_path))
        idle = backend.daemon_idle_timeout() if idle_timeout is None else float(idle_timeout)
        log("starting", store=str(root), version=__version__)
        settings = key_settings if key_settings is not None else config.key_settings()
        os.environ.pop(config.PASSPHRASE_ENV, None)  # nothing this process starts inherits it
        # The model's session build (C++, GIL released) overlaps loading LanceDB
        # and the store open; the store binds the same embedder, already loaded.
        backend.preload_model(lambda exc: log("embedder_preload_failed", error=f"{type(exc).__name__}: {exc}"))
        store = _open_store(root, stop_requested, settings)
        if stop_requested.is_set():
            return EXIT_OK
        guard = auth.Guard.for_passphrase(
            store.store_id, settings.passphrase if store.key_source == "passphrase" else None)
        del settings
        sock_path = wire.socket_path(root)
        listener = bind_listener(sock_path)
        daemon = Daemon(store, listener, sock_path, idle_timeout=idle, wake=(wake_r, wake_w),
                        stop_requested=stop_requested, guard=guard)
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


def end_process(code: int) -> NoReturn:
    """End a ``daemon run`` process once ``run`` has returned.

    By then the store is closed (its provenance queue drained, its lock
    released) and ``daemon.json`` and the socket are gone, so nothing is left
    for interpreter finalisation to do but tear down native runtimes, and
    that can hang: lancedb's Tokio runtime and background event loop have no
    shutdown of their own, and a non-daemon thread any library started would
    block exit for good. A stopped daemon that does not exit holds a ``stop``
    (and whoever waits on it) to its timeout, so flush what is buffered and
    leave at once.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


#: A passphrase longer than this is not re-piped (a pipe buffer holds 64 KiB).
_MAX_PIPED_PASSPHRASE = 60_000


def exec_without_passphrase(store_path: str | os.PathLike[str] | None, idle_timeout: float | None) -> None:
    """A ``daemon run`` started with ``IAI_MCP_CRYPTO_PASSPHRASE`` in its
    environment replaces itself (same pid) with one that reads it from a pipe
    on stdin: ``/proc/<pid>/environ`` shows the environment a process was
    started with, whatever ``os.environ`` says later. Returns when there is
    nothing to hide."""
    import sys

    passphrase = os.environ.get(config.PASSPHRASE_ENV)
    if not passphrase or len(passphrase.encode("utf-8")) > _MAX_PIPED_PASSPHRASE:
        return
    read_end, write_end = os.pipe()
    os.write(write_end, wire.piped_passphrase(passphrase))
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    from iai_mcp import backend

    root = wire.canonical_root(backend.store_path(store_path))
    argv = [sys.executable, "-m", "iai_mcp", "--store", str(root), "daemon", "run", "--passphrase-stdin"]
    if idle_timeout is not None:
        argv += ["--idle-timeout", repr(idle_timeout)]
    env = {k: v for k, v in os.environ.items() if k != config.PASSPHRASE_ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def status(store_path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """What the running daemon says about itself (``ping``), or None if none answers."""
    from iai_mcp import backend
    from iai_mcp.daemon.client import DaemonClient, DaemonNotRunning

    client = DaemonClient(wire.canonical_root(backend.store_path(store_path)), autostart=False,
                          request_timeout=10.0)
    try:
        return client.call(wire.PING)
    except DaemonNotRunning:
        return None
    except (KeyUnavailable, WrongKey):
        # A passphrase store's daemon tells only who proves the passphrase;
        # that it runs is no secret (its pid is in daemon.json).
        state = wire.read_state(client.root) or {}
        pid = state.get("pid")
        if not (isinstance(pid, int) and wire.pid_alive(pid)):
            return None
        return {"pid": pid, "store": str(client.root), "state": state.get("state"), "locked": True}
    finally:
        client.close()


def stop(store_path: str | os.PathLike[str] | None = None, timeout: float = 30.0) -> bool:
    """Stop the store's daemon (SIGTERM: it drains, then exits).

    True when a daemon was running and has exited, False when none was
    running; StoreError if it is still running after ``timeout`` seconds.
    A daemon still opening the store (not listening yet) is found by its pid.
    """
    from iai_mcp import backend

    info = status(store_path)
    if info is None:
        # Not listening yet (still opening a large store) is not "not running".
        root = wire.canonical_root(backend.store_path(store_path))
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
    is ``iai_mcp ... daemon run`` for this very store (pids get reused)."""
    from iai_mcp.store.meta import lock_holder

    candidates = [(wire.read_state(root) or {}).get("pid"), lock_holder(root)]
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
    store = _daemon_run_store(argv)
    return store is not None and wire.canonical_root(store) == root


def _daemon_run_store(argv: list[str]) -> str | None:
    """The store a ``daemon run`` command line serves, or None if it is not one.
    Two spellings: ``python -m iai_mcp --store ROOT daemon run`` and the previous
    release's ``python -m iai_mcp.daemon run --store ROOT`` (``daemon/__main__.py``)."""
    for module, command in (("iai_mcp", ["daemon", "run"]), ("iai_mcp.daemon", ["run"])):
        if module in argv:
            rest = argv[argv.index(module) + 1:]
            break
    else:
        return None
    try:
        store = rest[rest.index("--store") + 1]
    except (ValueError, IndexError):
        return None
    words = [a for a in rest if not a.startswith("-") and a != store]
    return store if words[:len(command)] == command else None


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
